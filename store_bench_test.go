package realtimeauth_test

// Benchmarks of the memory store at a busy server's size (issue 14):
//
//	go test -run '^$' -bench 'MemoryStore' -benchmem -count 5 .

import (
	"context"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// storeLoad fills a memory store the way the handler does: clients at their
// cap of 10 live sessions, each open charged two allowances (new sessions
// and mints per client), the clock moving on a millisecond per open.
type storeLoad struct {
	st      realtimeauth.SessionStore
	clients []string
	allow   [][]realtimeauth.Allowance // by client, built before the clock starts
	now     time.Time
	i       int
}

func newStoreLoad(clients, sessions int) *storeLoad {
	l := &storeLoad{st: realtimeauth.NewMemoryStore(), clients: benchKeys(clients), now: benchT0}
	for _, c := range l.clients {
		l.allow = append(l.allow, []realtimeauth.Allowance{
			{Key: "n:" + c, Limit: 1023, Window: time.Minute},
			{Key: "m:" + c, Limit: 1023, Window: time.Minute},
		})
	}
	l.fill(sessions)
	return l
}

// fill opens n sessions.
func (l *storeLoad) fill(n int) {
	for range n {
		if _, _, err := l.open(); err != nil {
			panic(err)
		}
	}
}

func (l *storeLoad) open() (realtimeauth.Session, []realtimeauth.Session, error) {
	ci := l.i % len(l.clients)
	l.i++
	l.now = l.now.Add(time.Millisecond)
	return l.st.Open(context.Background(), realtimeauth.OpenRequest{
		Now: l.now, ExpiresAt: l.now.Add(time.Hour), ClientIP: l.clients[ci], Client: l.clients[ci],
		Allowances:   l.allow[ci],
		MaxPerClient: 10, MaxSessions: 1_000_000,
	})
}

// BenchmarkMemoryStoreOpen opens sessions in a store holding 300,000 live
// ones (30,000 clients at their cap, so every open evicts that client's
// least recently used session), and refreshes them.
func BenchmarkMemoryStoreOpen(b *testing.B) {
	const live = 300_000
	b.Run("open", func(b *testing.B) {
		l := newStoreLoad(live/10, live)
		b.ReportAllocs()
		cpu := processCPU()
		b.ResetTimer()
		for range b.N {
			if _, _, err := l.open(); err != nil {
				b.Fatal(err)
			}
		}
		reportCPU(b, cpu, false)
	})
	b.Run("open-below-cap", func(b *testing.B) {
		// 300,000 clients with one session each: nobody is evicted.
		l := newStoreLoad(live, live)
		l.st = realtimeauth.NewMemoryStore()
		l.i = 0
		for range live / 2 {
			l.open()
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if i%(live/2) == 0 && i > 0 {
				b.StopTimer()
				l.st, l.i = realtimeauth.NewMemoryStore(), 0
				for range live / 2 {
					l.open()
				}
				b.StartTimer()
			}
			if _, ev, err := l.open(); err != nil || len(ev) > 0 {
				b.Fatal(err, ev)
			}
		}
	})
	b.Run("refresh", func(b *testing.B) {
		l := newStoreLoad(live/10, 0)
		mints := make([][]realtimeauth.Allowance, live)
		ids := make([]realtimeauth.Session, 0, live)
		for range live {
			s, _, err := l.open()
			if err != nil {
				b.Fatal(err)
			}
			mints[len(ids)] = l.allow[(len(ids))%len(l.clients)][1:]
			ids = append(ids, s)
		}
		b.ReportAllocs()
		cpu := processCPU()
		b.ResetTimer()
		for i := range b.N {
			s := ids[i%live]
			l.now = l.now.Add(time.Millisecond)
			_, err := l.st.Refresh(context.Background(), realtimeauth.RefreshRequest{
				Now: l.now, ID: s.ID, ClientIP: s.ClientIP, MaxRefreshes: 1 << 30,
				Allowances: mints[i%live],
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		reportCPU(b, cpu, false)
	})
}

// BenchmarkMemoryStoreGC reports what one full collection costs with
// 1,000,000 live sessions in the store, beside the same collection without
// them ("empty"): the difference is what the sessions cost the collector.
// It also reports the heap held per session (its clients' allowances
// included) and the scannable part of it.
func BenchmarkMemoryStoreGC(b *testing.B) {
	for _, n := range []int{0, 1_000_000} {
		name := "empty"
		if n > 0 {
			name = "1M-sessions"
		}
		b.Run(name, func(b *testing.B) {
			l := newStoreLoad(max(1, n/10), 0)
			base, scanBase := heapAfterGC(), scannableHeap()
			l.fill(n)
			held := heapAfterGC() - base
			b.ResetTimer()
			for range b.N {
				runtime.GC()
			}
			b.StopTimer()
			if n > 0 {
				b.ReportMetric(float64(scannableHeap()-scanBase)/float64(n), "scan-B/session")
				b.ReportMetric(float64(held)/float64(n), "heap-B/session")
			}
			runtime.KeepAlive(l)
		})
	}
}

// scannableHeap is the heap the collector has to scan, as of the last
// collection.
func scannableHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/scan/heap:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestMemoryStoreScannableHeap: 200,000 live sessions add almost nothing
// to what the collector scans: the per-client side tables only.
func TestMemoryStoreScannableHeap(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a large store")
	}
	const n = 200_000
	l := newStoreLoad(n/10, 0)
	runtime.GC()
	before := scannableHeap()
	l.fill(n)
	runtime.GC()
	after := scannableHeap()
	c, err := l.st.Count(context.Background(), l.now)
	require.NoError(t, err)
	require.Equal(t, n, c)
	perSession := float64(int64(after)-int64(before)) / n
	t.Logf("scannable heap: %.1f bytes per live session", perSession)
	// 20,000 clients of 10 sessions: their interned keys and side tables
	// are about 4 B per session; a session holding a pointer would be 64.
	assert.Less(t, perSession, 8.0)
	runtime.KeepAlive(l)
}

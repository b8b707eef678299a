package calls_test

import (
	"context"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/realtimeauth/realtimeauth/calls"
	"github.com/realtimeauth/realtimeauth/realtimeauthtest"
)

func TestMemoryRegistry(t *testing.T) {
	realtimeauthtest.TestCallRegistry(t, func(t *testing.T) calls.Registry {
		r, err := calls.NewMemoryRegistry(0)
		require.NoError(t, err)
		return r
	})
}

func TestMemoryRegistryBounds(t *testing.T) {
	for _, n := range []int{-1, 100_000_001} {
		_, err := calls.NewMemoryRegistry(n)
		require.Error(t, err, n)
	}
}

func TestMemoryRegistryFull(t *testing.T) {
	ctx := context.Background()
	t0 := time.Unix(1_800_000_000, 0)
	r, err := calls.NewMemoryRegistry(2)
	require.NoError(t, err)
	res := func(client string, now time.Time) calls.Reservation {
		return calls.Reservation{Now: now, HoldUntil: now.Add(time.Minute), ClientIP: client, Client: client, MaxPerClient: 2}
	}
	slot, err := r.Reserve(ctx, res("10.0.0.1", t0))
	require.NoError(t, err)
	_, err = r.Bind(ctx, calls.Start{Slot: slot, ID: "rtc_1", StartedAt: t0})
	require.NoError(t, err)
	_, err = r.Reserve(ctx, res("10.0.0.2", t0))
	require.NoError(t, err)
	_, err = r.Reserve(ctx, res("10.0.0.3", t0))
	require.ErrorIs(t, err, calls.ErrFull, "a bound call and a slot fill 2")
	require.NotErrorIs(t, err, calls.ErrTooMany)
	_, err = r.Reserve(ctx, res("10.0.0.3", t0.Add(time.Minute)))
	require.NoError(t, err, "the slot's hold ran out: its place is free")
	_, err = r.End(ctx, "rtc_1", t0.Add(time.Minute))
	require.NoError(t, err)
	_, err = r.Reserve(ctx, res("10.0.0.4", t0.Add(time.Minute)))
	require.NoError(t, err, "an ended call frees its place")
}

// BenchmarkMemoryRegistry is one call's life in the registry: Reserve,
// Bind, End. It reports the heap held per live call, measured with
// 100,000 live calls.
func BenchmarkMemoryRegistry(b *testing.B) {
	ctx := context.Background()
	t0 := time.Unix(1_800_000_000, 0)
	b.Run("lifecycle", func(b *testing.B) {
		r, _ := calls.NewMemoryRegistry(0)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			now := t0.Add(time.Duration(i) * time.Microsecond)
			client := "10.0." + strconv.Itoa(i%250) + "." + strconv.Itoa(i/250%250)
			slot, err := r.Reserve(ctx, calls.Reservation{Now: now, HoldUntil: now.Add(time.Minute), ClientIP: client, Client: client, MaxPerClient: 2})
			if err != nil {
				b.Fatal(err)
			}
			id := "rtc_" + strconv.Itoa(i)
			if _, err := r.Bind(ctx, calls.Start{Slot: slot, ID: id, SessionID: "s", StartedAt: now, Deadline: now.Add(time.Hour), ExpiresAt: now.Add(61 * time.Minute)}); err != nil {
				b.Fatal(err)
			}
			if _, err := r.End(ctx, id, now); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("bytes_per_call", func(b *testing.B) {
		for b.Loop() {
			const n = 100_000
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			r, _ := calls.NewMemoryRegistry(0)
			for i := range n {
				client := "10." + strconv.Itoa(i/65536) + "." + strconv.Itoa(i/256%256) + "." + strconv.Itoa(i%256)
				slot, _ := r.Reserve(ctx, calls.Reservation{Now: t0, HoldUntil: t0.Add(time.Minute), ClientIP: client, Client: client, Subject: "user" + strconv.Itoa(i), MaxPerClient: 2})
				_, _ = r.Bind(ctx, calls.Start{Slot: slot, ID: "rtc_" + strconv.Itoa(i), SessionID: "0b6ac2c4-7c1d-4f52-9d8e-5c6e1f0a" + strconv.Itoa(1000+i%9000), StartedAt: t0, Deadline: t0.Add(time.Hour), ExpiresAt: t0.Add(61 * time.Minute)})
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/call")
			runtime.KeepAlive(r)
		}
	})
}

package bench

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/stretchr/testify/assert"
)

// keys returns n distinct IPv4 address strings, allocated before any
// measurement.
func keys(n int) []string {
	ks := make([]string, n)
	for i := range ks {
		ks[i] = fmt.Sprintf("%d.%d.%d.%d", 10+i>>24, i>>16&0xff, i>>8&0xff, i&0xff)
	}
	return ks
}

// workload is one limiter workload. "admit" never reaches its limit during
// a run (for one key the window is short, 1,023 per 8µs, so that a hundred
// million decisions a second stay under it); "reject" is over its limit
// once warm. 1,023 is the most realtimeauth.NewMemoryLimiter holds.
type workload struct {
	name   string
	keys   int
	limit  int
	window time.Duration
}

var workloads = []workload{
	{"1key/admit", 1, 1023, 8 * time.Microsecond},
	{"1key/reject", 1, 1, time.Hour},
	{"100000keys/admit", 100_000, 1023, time.Hour},
	{"100000keys/reject", 100_000, 1, time.Hour},
}

// BenchmarkPeers runs every workload through every peer, serial and with
// b.RunParallel, after a warm-up that touches every key once.
func BenchmarkPeers(b *testing.B) {
	for _, w := range workloads {
		ks := keys(w.keys)
		for _, p := range Peers {
			for _, parallel := range []bool{false, true} {
				mode := "serial"
				if parallel {
					mode = "parallel"
				}
				b.Run(w.name+"/"+mode+"/"+benchName(p.Name), func(b *testing.B) {
					d := p.New(w.limit, w.window)
					defer d.Close()
					for _, k := range ks {
						d.Allow(k)
					}
					b.ReportAllocs()
					b.ResetTimer()
					if !parallel {
						for i := 0; i < b.N; i++ {
							d.Allow(ks[i%len(ks)])
						}
						return
					}
					var worker atomic.Uint32
					cpu := processCPU()
					b.RunParallel(func(pb *testing.PB) {
						i := int(worker.Add(1)) * 7919 // each goroutine from its own offset
						for pb.Next() {
							d.Allow(ks[i%len(ks)])
							i++
						}
					})
					// CPU time per decision over GOMAXPROCS: what ns/op would be
					// on cores of our own, and what neighbours disturb least.
					if used := processCPU() - cpu; used > 0 {
						b.ReportMetric(float64(used)/float64(b.N)/float64(runtime.GOMAXPROCS(0)), "cpu-ns/op")
					}
				})
			}
		}
	}
}

// benchName makes a peer's name usable in a benchmark name.
func benchName(s string) string {
	return strings.NewReplacer(" ", "_", "/", "-", "+", "_").Replace(s)
}

// BenchmarkMemoryPerKey reports, for each peer, the heap that tracking
// 1,000,000 distinct keys takes, per key ("B/key"), the key strings
// excluded: they are allocated before the baseline. Run it once:
//
//	go test -run '^$' -bench MemoryPerKey -benchtime 1x
func BenchmarkMemoryPerKey(b *testing.B) {
	const n = 1_000_000
	ks := keys(n)
	for _, p := range Peers {
		b.Run(benchName(p.Name), func(b *testing.B) {
			for range b.N {
				perKey := memoryPerKey(p, ks)
				b.ReportMetric(perKey, "B/key")
			}
		})
	}
}

func memoryPerKey(p Peer, ks []string) float64 {
	before := heapInUse()
	d := p.New(1023, time.Hour)
	for _, k := range ks {
		d.Allow(k)
	}
	after := heapInUse()
	runtime.KeepAlive(d)
	runtime.KeepAlive(ks)
	d.Close()
	return float64(int64(after)-int64(before)) / float64(len(ks))
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestExactAdmission sends 2,000 attempts for one key from 64 goroutines
// at once through each peer with a limit of 100 per hour, prints how many
// got through, and requires exactly 100 from ours.
func TestExactAdmission(t *testing.T) {
	const goroutines, attempts, limit = 64, 2000, 100
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "limiter\tadmitted of %d (limit %d, %d goroutines)\n", attempts, limit, goroutines)
	for _, p := range Peers {
		d := p.New(limit, time.Hour)
		var admitted atomic.Int64
		var wg sync.WaitGroup
		start := make(chan struct{})
		for g := range goroutines {
			n := attempts / goroutines
			if g < attempts%goroutines {
				n++
			}
			wg.Go(func() {
				<-start
				for range n {
					if d.Allow("203.0.113.9") {
						admitted.Add(1)
					}
				}
			})
		}
		close(start)
		wg.Wait()
		d.Close()
		fmt.Fprintf(tw, "%s\t%d\n", p.Name, admitted.Load())
		if p.Name == "realtimeauth" {
			assert.EqualValues(t, limit, admitted.Load(), "realtimeauth must admit exactly the limit")
		}
	}
	_ = tw.Flush()
}

package realtimeauth

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestCounterTableMatchesMap runs random sets, deletes, sweeps and capped
// admissions on a counterTable and on a map, and compares them after each.
func TestCounterTableMatchesMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 4))
	r := newWindowRule(1023, 4*time.Second)
	var tab counterTable
	ref := map[uint64]uint64{}
	now := time.Unix(1_000_000, 0)
	// Few distinct hashes, with colliding homes, so that probes run long.
	key := func() uint64 { return uint64(rng.IntN(300))<<32 | uint64(rng.IntN(3)) }
	for step := range 20_000 {
		switch op := rng.IntN(10); {
		case op < 4:
			k, v := key(), rng.Uint64()&countsMask|uint64(r.subWindow(now))&indexMask<<countsBits
			tab.set(k, v)
			ref[slotKey(k)] = v
		case op < 6:
			k := key()
			tab.del(k)
			delete(ref, slotKey(k))
		case op < 9:
			k := key()
			before, had := ref[slotKey(k)]
			d, old, ok := tab.allow(r, k, now, 1<<30)
			require.Equal(t, had, ok, "step %d", step)
			require.Equal(t, before, old, "step %d", step)
			if d.Allowed {
				ref[slotKey(k)] = rebase(before, had, r.subWindow(now)) + 1
			}
		default:
			now = now.Add(time.Duration(rng.IntN(3)) * time.Second)
			m := tab.advance(r, now)
			idx := uint64(m) & indexMask
			for k, v := range ref {
				if (idx-v>>countsBits)&indexMask > subWindows {
					delete(ref, k)
				}
			}
		}
		require.Equal(t, len(ref), tab.len(), "step %d", step)
		for k, v := range ref {
			got, ok := tab.get(k)
			require.True(t, ok, "step %d: key %x", step, k)
			require.Equal(t, v, got, "step %d: key %x", step, k)
		}
	}
}

// TestCounterTableCap: a full table evicts one key per new one.
func TestCounterTableCap(t *testing.T) {
	r := newWindowRule(5, time.Minute)
	var tab counterTable
	now := time.Unix(1_000_000, 0)
	for i := range 1000 {
		d, _, _ := tab.allow(r, uint64(i+1)<<32, now, 100)
		require.True(t, d.Allowed)
		require.LessOrEqual(t, tab.len(), 100)
	}
	require.Equal(t, 100, tab.len())
}

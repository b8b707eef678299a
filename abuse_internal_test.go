package realtimeauth

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sameShardKeys returns n keys that land in one shard of g.
func sameShardKeys(t *testing.T, g *memoryAbuseGuard, n int) []string {
	t.Helper()
	byShard := map[*abuseShard][]string{}
	for i := 0; ; i++ {
		k := "10.0." + strconv.Itoa(i/256) + "." + strconv.Itoa(i%256)
		sh := g.shard(k)
		byShard[sh] = append(byShard[sh], k)
		if len(byShard[sh]) == n {
			return byShard[sh]
		}
	}
}

// A full shard forgets a lapsed entry before a live one: evicting the live
// one would wipe a client's strikes. Eviction among live keys is random, so
// the scenario runs on 20 fresh guards.
func TestAbuseGuardFullShardDropsLapsedFirst(t *testing.T) {
	ctx := context.Background()
	const window = 10 * time.Minute
	t0 := time.Unix(1_800_000_000, 0)
	for range 20 {
		g, err := newMemoryAbuseGuard(3, window, time.Hour, 2*abuseShards)
		require.NoError(t, err)
		require.Equal(t, 2, g.maxPerShard)
		k := sameShardKeys(t, g, 3)
		live, lapsing, newcomer := k[0], k[1], k[2]

		strike := func(key string, at time.Duration) bool {
			_, started, err := g.Strike(ctx, key, t0.Add(at))
			require.NoError(t, err)
			return started
		}
		strike(live, 0)                     // the shard's periodic sweep runs here
		strike(lapsing, time.Minute)        // lapses at 11m
		strike(live, window+30*time.Second) // periodic sweep: live's old window ended; live starts anew
		// At 11m30s the shard is full (live, lapsing) and lapsing has lapsed.
		strike(newcomer, window+90*time.Second)

		// live kept its strike: two more make three within its window.
		assert.False(t, strike(live, window+100*time.Second))
		assert.True(t, strike(live, window+110*time.Second), "the live key's strike was evicted")
	}
}

package redisstore_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/realtimeauthtest"
	"github.com/realtimeauth/realtimeauth/redisstore"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// prefixes gives every store of the suites its own keys.
var prefixes atomic.Int64

func freshPrefix() redisstore.Option {
	return redisstore.WithPrefix(fmt.Sprint("c", prefixes.Add(1)))
}

// colocated returns n client keys in one bucket of buckets: IPv4
// addresses, and an IPv6 /64 last.
func colocated(buckets int) func(n int) []string {
	return func(n int) []string {
		var out []string
		want := redisstore.BucketOf("192.0.2.1", buckets)
		for i := 0; len(out) < n-1; i++ {
			c := fmt.Sprintf("192.0.%d.%d", 2+i/250, 1+i%250)
			if redisstore.BucketOf(c, buckets) == want {
				out = append(out, c)
			}
		}
		for i := 0; len(out) < n; i++ {
			c := fmt.Sprintf("2001:db8:%x:1::/64", i)
			if redisstore.BucketOf(c, buckets) == want {
				out = append(out, c)
			}
		}
		return out
	}
}

// TestConformance runs realtimeauthtest's suites against every Redis type
// (a single server, a three-master cluster), the session store with one
// bucket (MaxSessions exact) and with the default 256 (MaxSessions per
// bucket, as its doc says).
func TestConformance(t *testing.T) {
	eachTopology(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		for _, buckets := range []int{1, redisstore.DefaultBuckets} {
			t.Run(fmt.Sprintf("SessionStore/buckets=%d", buckets), func(t *testing.T) {
				realtimeauthtest.TestSessionStore(t, func(t *testing.T) realtimeauth.SessionStore {
					s, err := redisstore.NewSessionStore(ctx, rdb, redisstore.WithBuckets(buckets), freshPrefix())
					require.NoError(t, err)
					return s
				}, realtimeauthtest.SessionStoreOptions{Partitions: buckets, Colocated: colocated(buckets)})
			})
		}
		t.Run("Limiter", func(t *testing.T) {
			realtimeauthtest.TestLimiter(t, func(t *testing.T, limit int, window time.Duration) realtimeauth.Limiter {
				l, err := redisstore.NewLimiter(ctx, rdb, limit, window, freshPrefix())
				require.NoError(t, err)
				return l
			})
		})
		t.Run("AbuseGuard", func(t *testing.T) {
			realtimeauthtest.TestAbuseGuard(t, func(t *testing.T, strikes int, window, blockFor time.Duration) realtimeauth.AbuseGuard {
				g, err := redisstore.NewAbuseGuard(ctx, rdb, strikes, window, blockFor, freshPrefix())
				require.NoError(t, err)
				return g
			})
		})
	})
}

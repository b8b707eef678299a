package redisstore_test

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/redisstore"
	"github.com/stretchr/testify/require"
)

// The benchmarks put the Redis implementations beside the in-memory ones:
// ns/op, and round trips per op counted by the client hook. Serial runs
// measure one caller's latency, parallel ones (b.RunParallel) throughput.
//
//	go test -run '^$' -bench . -benchtime 2000x ./redisstore/

var benchKeys = func() []string {
	k := make([]string, 1024)
	for i := range k {
		k[i] = fmt.Sprintf("10.0.%d.%d", i/256, i%256)
	}
	return k
}()

func BenchmarkLimiterAllow(b *testing.B) {
	const limit = realtimeauth.MaxMemoryLimit
	run := func(b *testing.B, l realtimeauth.Limiter, rt *roundTrips, parallel bool) {
		ctx := context.Background()
		var before int64
		if rt != nil {
			before = rt.Load()
		}
		b.ResetTimer()
		if parallel {
			var i atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := l.Allow(ctx, benchKeys[i.Add(1)%1024]); err != nil {
						b.Error(err)
						return
					}
				}
			})
		} else {
			for i := 0; b.Loop(); i++ {
				if _, err := l.Allow(ctx, benchKeys[i%1024]); err != nil {
					b.Fatal(err)
				}
			}
		}
		if rt != nil {
			b.ReportMetric(float64(rt.Load()-before)/float64(b.N), "roundtrips/op")
		}
	}
	b.Run("memory", func(b *testing.B) { run(b, realtimeauth.NewMemoryLimiter(limit, time.Minute), nil, false) })
	for _, parallel := range []bool{false, true} {
		name := map[bool]string{false: "redis", true: "redis-parallel"}[parallel]
		b.Run(name, func(b *testing.B) {
			_, rdb, rt := startRedis(b)
			l, err := redisstore.NewLimiter(rdb, limit, time.Minute)
			require.NoError(b, err)
			require.NoError(b, redisstore.LoadScripts(context.Background(), rdb))
			run(b, l, rt, parallel)
		})
	}
}

func BenchmarkSessionCreate(b *testing.B) {
	run := func(b *testing.B, s realtimeauth.SessionStore, rt *roundTrips, parallel bool) {
		ctx := context.Background()
		now := time.Now()
		var before int64
		if rt != nil {
			before = rt.Load()
		}
		var n atomic.Int64
		create := func() error {
			i := n.Add(1)
			return s.Create(ctx, realtimeauth.Session{ID: "bench-" + strconv.FormatInt(i, 10), ClientIP: benchKeys[i%1024],
				Subject: "user-" + strconv.FormatInt(i%100, 10), CreatedAt: now, ExpiresAt: now.Add(10 * time.Minute),
				LastIssuedAt: now}, 1_000_000)
		}
		b.ResetTimer()
		if parallel {
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := create(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		} else {
			for b.Loop() {
				if err := create(); err != nil {
					b.Fatal(err)
				}
			}
		}
		if rt != nil {
			b.ReportMetric(float64(rt.Load()-before)/float64(b.N), "roundtrips/op")
		}
	}
	b.Run("memory", func(b *testing.B) { run(b, realtimeauth.NewMemoryStore(), nil, false) })
	for _, parallel := range []bool{false, true} {
		name := map[bool]string{false: "redis", true: "redis-parallel"}[parallel]
		b.Run(name, func(b *testing.B) {
			_, rdb, rt := startRedis(b)
			s, err := redisstore.NewSessionStore(rdb)
			require.NoError(b, err)
			require.NoError(b, redisstore.LoadScripts(context.Background(), rdb))
			run(b, s, rt, parallel)
		})
	}
}

package redisstore_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth/redisstore/redistest"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// t0 is a whole number of minutes (and seconds) since the Unix epoch, so
// that a memory limiter created at t0 and a Limiter whose windows start at
// the epoch cut time alike.
var t0 = time.Unix(1_800_000_000, 0)

// roundTrips counts the commands and pipelines a client sends: one per
// network round trip. A new connection's handshake (HELLO) is not counted:
// pooled connections pay it once.
type roundTrips struct{ n atomic.Int64 }

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() != "hello" {
			r.n.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		r.n.Add(1)
		return next(ctx, cmds)
	}
}

// Load returns the count so far.
func (r *roundTrips) Load() int64 { return r.n.Load() }

// newClient returns a client of srv, and its round-trip counter. A stopped
// server refuses connections at once and dials are not retried; a stalled
// one is cut off by the caller's context (ContextTimeoutEnabled). The
// timeouts themselves stay loose enough for -race on a loaded machine.
func newClient(t testing.TB, srv *redistest.Server) (*redis.Client, *roundTrips) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{
		Addr:                  srv.Addr,
		DialTimeout:           3 * time.Second,
		ReadTimeout:           3 * time.Second,
		WriteTimeout:          3 * time.Second,
		PoolTimeout:           2 * time.Second,
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
		DialerRetries:         1,
		PoolSize:              64,
		Protocol:              2,
		DisableIdentity:       true,
	})
	rt := &roundTrips{}
	rdb.AddHook(rt)
	t.Cleanup(func() { _ = rdb.Close() })
	require.NoError(t, rdb.Ping(context.Background()).Err())
	return rdb, rt
}

// startRedis starts a redis-server for the test and returns a client of it.
func startRedis(t testing.TB) (*redistest.Server, *redis.Client, *roundTrips) {
	t.Helper()
	srv := redistest.Start(t)
	rdb, rt := newClient(t, srv)
	return srv, rdb, rt
}

// startCluster starts a three-master Redis Cluster for the test and
// returns a ClusterClient of it, and its round-trip counter.
func startCluster(t testing.TB) (*redistest.Cluster, *redis.ClusterClient, *roundTrips) {
	t.Helper()
	c := redistest.StartCluster(t)
	rdb, rt := newClusterClient(t, c)
	return c, rdb, rt
}

// newClusterClient returns a client of cluster c, and its round-trip
// counter.
func newClusterClient(t testing.TB, c *redistest.Cluster) (*redis.ClusterClient, *roundTrips) {
	t.Helper()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:                 c.Addrs,
		DialTimeout:           3 * time.Second,
		ReadTimeout:           3 * time.Second,
		WriteTimeout:          3 * time.Second,
		PoolTimeout:           2 * time.Second,
		ContextTimeoutEnabled: true,
		PoolSize:              64,
		Protocol:              2,
		DisableIdentity:       true,
	})
	rt := &roundTrips{}
	rdb.AddHook(rt)
	t.Cleanup(func() { _ = rdb.Close() })
	require.NoError(t, rdb.ForEachShard(context.Background(), func(ctx context.Context, c *redis.Client) error {
		return c.Ping(ctx).Err()
	}))
	return rdb, rt
}

// eachTopology runs f against a single redis-server and against a
// three-master Redis Cluster through a ClusterClient, where a script whose
// keys do not share a slot would fail.
func eachTopology(t *testing.T, f func(t *testing.T, rdb redis.UniversalClient)) {
	t.Run("single", func(t *testing.T) {
		_, rdb, _ := startRedis(t)
		f(t, rdb)
	})
	t.Run("cluster", func(t *testing.T) {
		_, rdb, _ := startCluster(t)
		f(t, rdb)
	})
}

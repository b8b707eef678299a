package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/redisstore"
	"github.com/redis/go-redis/v9"
)

// parseRedisURL reads REDIS_URL (redis://[user:password@]host:port[/db], or
// rediss:// for TLS). Its errors never repeat the URL, which may hold a
// password.
func parseRedisURL(v string) (*redis.Options, error) {
	opt, err := redis.ParseURL(v)
	if err != nil {
		const want = "REDIS_URL: want redis://[user:password@]host:port[/db] or rediss://…"
		if errors.As(err, new(*url.Error)) {
			// url.Error quotes the whole URL, and even its inner error
			// quotes what it took for a port, which is the start of a
			// password holding an unescaped / ? or #: say nothing of it.
			return nil, errors.New(want + ": the URL is malformed (percent-encode / ? # @ in the password)")
		}
		return nil, fmt.Errorf("%s: %v", want, err)
	}
	// Bound every call by the request's context, and fail fast when Redis
	// is down rather than hold requests: the handler then answers 503. The
	// URL's own dial_timeout, read_timeout and write_timeout win.
	opt.ContextTimeoutEnabled = true
	for _, d := range []*time.Duration{&opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout} {
		if *d == 0 {
			*d = time.Second
		}
	}
	return opt, nil
}

// redisHandlerOptions connects to Redis and returns the options that keep
// the rate limit, the sessions and the abuse state there, shared by every
// instance of the server, and a function closing the client.
func (c config) redisHandlerOptions(ctx context.Context, logger *slog.Logger) ([]realtimeauth.Option, func(), error) {
	routeRedisLog(logger)
	client := redis.NewClient(c.Redis)
	fail := func(err error) ([]realtimeauth.Option, func(), error) {
		_ = client.Close()
		return nil, nil, fmt.Errorf("redis at %s: %w", c.Redis.Addr, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	store, err := redisstore.NewSessionStore(ctx, client)
	if err != nil {
		return fail(err)
	}
	// The allowances (VOICE_AGENT_RATE_LIMIT and the mint limit) live in
	// the store; the handler's options set them.
	calls, err := redisstore.NewCallRegistry(ctx, client)
	if err != nil {
		return fail(err)
	}
	opts := []realtimeauth.Option{realtimeauth.WithSessionStore(store), realtimeauth.WithAbuseGuard(nil), realtimeauth.WithCallRegistry(calls)}
	if c.BlockThreshold > 0 {
		guard, err := redisstore.NewAbuseGuard(ctx, client, c.BlockThreshold, c.BlockWindow, c.BlockDuration)
		if err != nil {
			return fail(err)
		}
		opts[1] = realtimeauth.WithAbuseGuard(guard)
	}
	logger.Info("keeping rate limits, sessions, calls and abuse state in Redis (REDIS_URL), shared by every instance",
		"redis_addr", c.Redis.Addr, "redis_db", c.Redis.DB, "redis_tls", c.Redis.TLSConfig != nil)
	return opts, func() { _ = client.Close() }, nil
}

// go-redis logs through one process-wide logger (redis.SetLogger), in plain
// text by default. routeRedisLog sends its lines through logger instead, so
// that with LOG_FORMAT=json they are JSON too. The adapter is installed
// once and reads the current logger, so that tests running several
// servers do not race on the global.
func routeRedisLog(logger *slog.Logger) {
	redisLogger.Store(logger)
	redisLogOnce.Do(func() { redis.SetLogger(slogRedis{}) })
}

var (
	redisLogger  atomic.Pointer[slog.Logger]
	redisLogOnce sync.Once
)

// slogRedis is go-redis's Logging interface over slog.
type slogRedis struct{}

func (slogRedis) Printf(ctx context.Context, format string, v ...any) {
	if l := redisLogger.Load(); l != nil {
		l.WarnContext(ctx, strings.TrimSpace(fmt.Sprintf(format, v...)), "component", "go-redis")
	}
}

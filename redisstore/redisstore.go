// Package redisstore keeps realtimeauth's shared state in Redis, so that
// several server instances behind a load balancer enforce one rate limit,
// one set of sessions and one abuse state between them:
//
//	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379", ContextTimeoutEnabled: true})
//	lim, _ := redisstore.NewLimiter(rdb, 10, time.Minute)
//	store, _ := redisstore.NewSessionStore(rdb)
//	guard, _ := redisstore.NewAbuseGuard(rdb, 10, 10*time.Minute, 15*time.Minute)
//	h, err := realtimeauth.New(minter,
//		realtimeauth.WithLimiter(lim),
//		realtimeauth.WithSessionStore(store),
//		realtimeauth.WithAbuseStore(guard))
//
// Every write (a limit decision, a strike, a session create or update) is
// one Lua script, hence atomic across instances and one round trip, and the
// abuse check is one HGET: an admitted token request costs 3 round trips
// (abuse check, limit, session create), a refresh 2 (abuse check, session
// update). A script Redis has not
// cached costs its first call one more; LoadScripts at start-up avoids that.
//
// # Keys
//
// All keys of one prefix (default "realtimeauth") share the hash tag
// "{prefix}", so that the scripts, which touch several keys (some of them,
// session hashes, by names the script builds), stay on one Redis Cluster
// slot; one prefix therefore lives on one cluster node:
//
//	{prefix}:limit:<client>      hash w, p, c: window index and its counts  (TTL 2 windows)
//	{prefix}:abuse:<client>      hash f, u, n: strike window start, block end, strikes
//	{prefix}:session:<id>        hash of the Session's fields              (TTL: its ExpiresAt + 1s)
//	{prefix}:sessions            sorted set of live session IDs by expiry (Count)
//	{prefix}:subject:<subject>   sorted set of a subject's session IDs by expiry
//
// Give the per-subject limiter (WithSubjectLimiter) its own prefix, so that
// its keys cannot meet the per-IP limiter's. Times are stored to the
// nanosecond as "seconds.nanoseconds", so that a store behaves exactly as
// realtimeauth.MemoryStore does with the same times.
//
// # Failures
//
// When Redis cannot be reached, a Limiter fails closed by default: Allow
// returns the error and the handler answers 503 store_unavailable.
// WithFailOpen makes it admit the request instead, logging the failure. The
// SessionStore and the AbuseGuard always fail closed (503 store_unavailable).
// Nothing is cached, so service resumes with Redis's first answer. How long
// a call may wait is the client's business: set ContextTimeoutEnabled (and
// short DialTimeout/ReadTimeout) on the redis options so that no call
// outlives the request's context.
package redisstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultPrefix is the key prefix used unless WithPrefix says otherwise.
const DefaultPrefix = "realtimeauth"

// Option configures a Limiter, SessionStore or AbuseGuard.
type Option func(*config)

type config struct {
	prefix   string
	now      func() time.Time
	failOpen bool
	logger   *slog.Logger
}

// WithPrefix sets the key prefix; every key is "{prefix}:…". Default
// DefaultPrefix. It must be non-empty and contain neither '{' nor '}'.
func WithPrefix(p string) Option {
	return func(c *config) { c.prefix = p }
}

// WithClock makes a Limiter read now instead of the Redis server's clock,
// for tests. Default: the server's TIME, which every instance shares, so
// that clock skew between instances cannot move the windows. The session
// store and the abuse guard read the times the handler passes them.
func WithClock(now func() time.Time) Option {
	return func(c *config) { c.now = now }
}

// WithFailOpen makes a Limiter admit a request when Redis fails (a
// Decision with Allowed set and Remaining 0, and no error), logging the
// failure at most once a second to logger, or slog.Default when nil.
// Default: fail closed, the error reaches the handler, which answers 503
// store_unavailable.
func WithFailOpen(logger *slog.Logger) Option {
	return func(c *config) {
		c.failOpen = true
		c.logger = logger
	}
}

func newConfig(client redis.UniversalClient, opts []Option) (config, error) {
	c := config{prefix: DefaultPrefix}
	for _, o := range opts {
		o(&c)
	}
	if client == nil {
		return c, errors.New("redisstore: the redis client is nil")
	}
	if c.prefix == "" || strings.ContainsAny(c.prefix, "{}") {
		return c, fmt.Errorf("redisstore: WithPrefix: %q must be non-empty without '{' or '}'", c.prefix)
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	return c, nil
}

func (c config) key(kind string) string { return "{" + c.prefix + "}:" + kind + ":" }

// encodeTime writes t as "seconds.nanoseconds" since the Unix epoch, which
// the scripts compare exactly; the zero time is "".
func encodeTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond())
}

func decodeTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	sec, nsec, ok := strings.Cut(s, ".")
	a, err1 := strconv.ParseInt(sec, 10, 64)
	b, err2 := strconv.ParseInt(nsec, 10, 64)
	if !ok || err1 != nil || err2 != nil || b < 0 || b >= 1e9 {
		return time.Time{}, fmt.Errorf("redisstore: malformed time %q in redis", s)
	}
	return time.Unix(a, b), nil
}

// ceilMillis is d in whole milliseconds, rounded up, at least 1.
func ceilMillis(d time.Duration) int64 {
	return max(1, int64(math.Ceil(float64(d)/float64(time.Millisecond))))
}

// luaTime is the scripts' time arithmetic on "seconds.nanoseconds" strings,
// as {seconds, nanoseconds} pairs: exact, where a double of Unix
// nanoseconds would not be.
const luaTime = `
local function T(s)
  if not s or s == '' then return nil end
  local d = string.find(s, '.', 1, true)
  return {tonumber(string.sub(s, 1, d - 1)), tonumber(string.sub(s, d + 1))}
end
local function S(t) return string.format('%d.%09d', t[1], t[2]) end
local function before(a, b) return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2]) end
local function add(t, ns)
  local s, n = t[1] + math.floor(ns / 1e9), t[2] + ns % 1e9
  if n >= 1e9 then s, n = s + 1, n - 1e9 end
  return {s, n}
end
local function micros(t) return t[1] * 1e6 + math.floor(t[2] / 1e3) end
`

func wrap(op string, err error) error {
	return fmt.Errorf("redisstore: %s: %w", op, err)
}

// LoadScripts loads every script of the package into Redis's script cache.
// It is optional: a script missing from the cache (a fresh or restarted
// Redis) costs its first call one more round trip (EVALSHA answered
// NOSCRIPT, then EVAL). Call it at start-up to spare the first requests that.
func LoadScripts(ctx context.Context, client redis.UniversalClient) error {
	for _, s := range []*redis.Script{limitScript, createScript, updateScript, countScript, revokeSubjectScript, strikeScript} {
		if err := s.Load(ctx, client).Err(); err != nil {
			return wrap("loading scripts", err)
		}
	}
	return nil
}

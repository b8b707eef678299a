// Package redisstore keeps realtimeauth's shared state in Redis (a single
// server, or a Redis Cluster), so that several server instances behind a
// load balancer enforce one set of allowances, caps, sessions and blocks
// between them:
//
//	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379", ContextTimeoutEnabled: true})
//	store, err := redisstore.NewSessionStore(ctx, rdb)
//	guard, err := redisstore.NewAbuseGuard(ctx, rdb, 10, 10*time.Minute, 15*time.Minute)
//
// and hand them to the handler (realtimeauth.WithSessionStore,
// realtimeauth.WithAbuseGuard). Limiter is a standalone
// realtimeauth.Limiter by the same rule as the store's allowances, and
// CallRegistry keeps the relayed calls, a calls.Registry (see its doc;
// realtimeauth.WithCallRegistry). The README sizes Redis for the
// caps and has the figures.
//
// # Round trips
//
// Every operation is one Lua script (EVALSHA, falling back to EVAL when
// Redis has not cached it), so atomic across instances. An anonymous token
// request costs the handler 2 round trips: the block check (one HGET) and
// Open (one script, the allowances, the per-client cap and the total cap
// included); a refresh the same 2 (block check, Refresh). With an
// authenticator, the subject's allowance and cap live in the subject's own
// bucket (see Keys), so Open and Refresh cost one script more: 3 round
// trips. A refusal that has to undo a step, and an Open that evicts an
// authenticated session, cost one more again.
//
// # Keys
//
// Keys are grouped into buckets (WithBuckets, default 256), each bucket one
// Redis Cluster hash tag "{prefix:b}", so that the buckets, hence the load,
// spread over the cluster's shards while every script touches one slot. A
// client's bucket is a hash of its client key's address (an IPv4 address,
// or an IPv6 /64's /48, so that a /48's allowance sits with its /64s); its
// allowances, its sessions, its least-recently-used set and its abuse state
// live there. A session ID carries its bucket in its random bits, so
// Refresh, Revoke and Delete find it from the ID alone. A subject's
// allowance ("s:" keys), its live-session index and its cap live in the
// bucket of the subject's hash. With T = "{prefix:b}":
//
//	T:s:<id>          string: a session's fields           (TTL: ExpiresAt + 1s)
//	T:c:<client>      sorted set: the client's live session IDs, by recency
//	T:live            sorted set: the bucket's live sessions ("id client"), by expiry
//	T:load            sorted set: the bucket's clients, by live sessions
//	T:a:<key>         string: an allowance's counts (14 bytes, TTL 5/4 window + 1s)
//	T:u:<subject>     sorted set: the subject's live sessions ("id expiry"), by expiry
//	T:x:<client>      hash: the client's strikes and block (AbuseGuard)
//
// Caps that span clients are kept per bucket: MaxSessions is split evenly
// over the buckets (each holds at most ceil(MaxSessions/buckets) live
// sessions) and a full bucket evicts its own heaviest client's least
// recently used session. Use fewer buckets when MaxSessions is small (with
// MaxSessions below the bucket count every bucket still holds one).
//
// # Memory
//
// Redis must not evict these keys: an evicted block lets a blocked client
// back in, an evicted session cuts a user off, an evicted allowance forgets
// a count, an evicted call frees its caps early and loses its hang-up
// deadline. NewSessionStore, NewLimiter, NewAbuseGuard and NewCallRegistry
// read maxmemory-policy (on every master of a cluster) and refuse any
// policy but noeviction (WithoutPolicyCheck skips the check, for managed
// Redis that hides CONFIG). The README sizes maxmemory for the caps.
//
// # Failures
//
// A backend failure is returned as an error wrapping the go-redis one; the
// handler fails closed on it (503 store_unavailable). A Limiter can fail
// open instead (WithFailOpen). Nothing is cached, so service resumes with
// Redis's first answer. How long a call may wait is the client's business:
// set ContextTimeoutEnabled (and short DialTimeout/ReadTimeout) on the redis
// options so that no call outlives the request's context.
package redisstore

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultPrefix is the key prefix used unless WithPrefix says otherwise.
const DefaultPrefix = "realtimeauth"

// DefaultBuckets is the number of buckets used unless WithBuckets says
// otherwise.
const DefaultBuckets = 256

// Option configures a SessionStore, Limiter, AbuseGuard or CallRegistry
// (which reads only WithPrefix and WithoutPolicyCheck).
type Option func(*config)

type config struct {
	prefix      string
	buckets     int
	policyCheck bool
	failOpen    bool
	logger      *slog.Logger
}

// WithPrefix sets the key prefix; every key is "{prefix:b}:…". Default
// DefaultPrefix. It must be non-empty and contain neither '{' nor '}'.
func WithPrefix(p string) Option {
	return func(c *config) { c.prefix = p }
}

// WithBuckets sets how many buckets (Redis Cluster hash tags) the keys are
// spread over. Default DefaultBuckets; valid range 1..65536. Every instance
// sharing a Redis must use the same number, and changing it loses the live
// sessions (their IDs name their bucket). One bucket keeps everything on one
// slot, with MaxSessions applied exactly across the store.
func WithBuckets(n int) Option {
	return func(c *config) { c.buckets = n }
}

// WithoutPolicyCheck skips the constructor's check that Redis's
// maxmemory-policy is noeviction, for a managed Redis that hides CONFIG.
// Make sure by other means that the policy is noeviction.
func WithoutPolicyCheck() Option {
	return func(c *config) { c.policyCheck = false }
}

// WithFailOpen makes a Limiter admit an event when Redis fails (a Decision
// with Allowed set, and no error), logging the failure at most once a second
// to logger, or slog.Default when nil. Default: fail closed, the error
// reaches the caller. The SessionStore and the AbuseGuard always fail
// closed.
func WithFailOpen(logger *slog.Logger) Option {
	return func(c *config) {
		c.failOpen = true
		c.logger = logger
	}
}

// newConfig applies opts, checks maxmemory-policy (unless told not to) and
// loads the scripts.
func newConfig(ctx context.Context, client redis.UniversalClient, opts []Option) (config, error) {
	c, err := checkedConfig(ctx, client, opts)
	if err != nil {
		return c, err
	}
	if err := loadScripts(ctx, client); err != nil {
		return c, err
	}
	return c, nil
}

// checkedConfig applies opts and checks maxmemory-policy (unless told not
// to), without loading scripts.
func checkedConfig(ctx context.Context, client redis.UniversalClient, opts []Option) (config, error) {
	c, err := parseConfig(client, opts)
	if err != nil {
		return c, err
	}
	if c.policyCheck {
		if err := checkPolicy(ctx, client); err != nil {
			return c, err
		}
	}
	return c, nil
}

// parseConfig applies and checks opts, without I/O.
func parseConfig(client redis.UniversalClient, opts []Option) (config, error) {
	c := config{prefix: DefaultPrefix, buckets: DefaultBuckets, policyCheck: true}
	for _, o := range opts {
		o(&c)
	}
	if client == nil {
		return c, errors.New("redisstore: the redis client is nil")
	}
	if c.prefix == "" || strings.ContainsAny(c.prefix, "{}") {
		return c, fmt.Errorf("redisstore: WithPrefix: %q must be non-empty without '{' or '}'", c.prefix)
	}
	if c.buckets < 1 || c.buckets > 1<<16 {
		return c, fmt.Errorf("redisstore: WithBuckets: %d is outside 1..65536", c.buckets)
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	return c, nil
}

// checkPolicy reads maxmemory-policy from every master.
func checkPolicy(ctx context.Context, client redis.UniversalClient) error {
	check := func(ctx context.Context, c *redis.Client) error {
		v, err := c.ConfigGet(ctx, "maxmemory-policy").Result()
		if err != nil {
			return fmt.Errorf("redisstore: reading maxmemory-policy (CONFIG GET; use WithoutPolicyCheck where CONFIG is hidden): %w", err)
		}
		if p := v["maxmemory-policy"]; p != "noeviction" {
			return fmt.Errorf("redisstore: redis at %s has maxmemory-policy %q, which may evict blocks, sessions, counts and calls: "+
				"set maxmemory-policy noeviction (CONFIG SET maxmemory-policy noeviction, or in redis.conf), "+
				"or, where CONFIG is hidden and the policy is known to be noeviction, use WithoutPolicyCheck",
				c.Options().Addr, p)
		}
		return nil
	}
	switch c := client.(type) {
	case *redis.ClusterClient:
		return c.ForEachMaster(ctx, check)
	case *redis.Client:
		return check(ctx, c)
	}
	return errors.New("redisstore: cannot check maxmemory-policy through this client type; use WithoutPolicyCheck")
}

// tag returns bucket b's hash tag, "{prefix:b}".
func (c config) tag(b int) string { return "{" + c.prefix + ":" + strconv.Itoa(b) + "}" }

// bucketKey is what a client's bucket is a hash of: an IPv4 address, or an
// IPv6 address's /48 (so that a /48's allowance sits with its /64s). s is a
// ClientIP, a client key (an IPv6 /64 prefix) or, for other keys, anything:
// then the key itself.
func bucketKey(s string) string {
	var a netip.Addr
	if p, err := netip.ParsePrefix(s); err == nil {
		a = p.Addr()
	} else if a, err = netip.ParseAddr(s); err != nil {
		return s
	}
	if a.Is4() {
		return a.String()
	}
	return netip.PrefixFrom(a.WithZone(""), 48).Masked().String()
}

// bucketOf returns the bucket of a client address or key, or of a subject.
func (c config) bucketOf(s string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(s))
	return int(h.Sum32() % uint32(c.buckets))
}

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
	return time.Unix(a, b).UTC(), nil
}

// micros is t in whole Unix microseconds, rounded down: a sorted-set score
// (exact in a double until the year 2255).
func micros(t time.Time) int64 {
	return t.Unix()*1e6 + int64(t.Nanosecond()/1e3)
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

var (
	scriptsMu  sync.Mutex
	allScripts []*redis.Script
)

// newScript registers a script for loadScripts.
func newScript(src string) *redis.Script {
	s := redis.NewScript(src)
	scriptsMu.Lock()
	allScripts = append(allScripts, s)
	scriptsMu.Unlock()
	return s
}

// loadScripts loads every script of the package into Redis's script cache
// (every master of a cluster), so that the first requests do not pay the
// NOSCRIPT round trip. A restarted Redis forgets them; Script.Run then loads
// them again, one round trip more for each script's first call.
func loadScripts(ctx context.Context, client redis.UniversalClient) error {
	scriptsMu.Lock()
	defer scriptsMu.Unlock()
	for _, s := range allScripts {
		if err := s.Load(ctx, client).Err(); err != nil {
			return wrap("loading scripts", err)
		}
	}
	return nil
}

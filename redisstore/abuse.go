package redisstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/redis/go-redis/v9"
)

// AbuseGuard is a realtimeauth.AbuseGuard kept in Redis, so that a client
// blocked by one instance is blocked by all. Its rule is
// realtimeauth.NewMemoryAbuseGuard's: strikes strikes within a fixed window,
// starting at a client's first strike after its last window or block ended,
// block it for blockFor; strikes against a blocked client are not counted,
// and exactly one strike, across every instance, starts a given block.
// Blocked is one read and Strike one Lua script, each one round trip. A key
// lives in its client's bucket (see Keys in the package doc), beside the
// client's allowances and sessions, and is forgotten by TTL once neither its
// window nor its block is live.
type AbuseGuard struct {
	client   redis.UniversalClient
	cfg      config
	strikes  int
	window   time.Duration
	blockFor time.Duration
}

var _ realtimeauth.AbuseGuard = (*AbuseGuard)(nil)

// NewAbuseGuard returns an AbuseGuard. strikes must be in 1..1,000,000,
// window and blockFor at least a millisecond. It checks maxmemory-policy
// (see WithoutPolicyCheck) and loads its script. Options: WithPrefix,
// WithBuckets, WithoutPolicyCheck.
func NewAbuseGuard(ctx context.Context, client redis.UniversalClient, strikes int, window, blockFor time.Duration, opts ...Option) (*AbuseGuard, error) {
	if strikes < 1 || strikes > 1_000_000 {
		return nil, fmt.Errorf("redisstore: NewAbuseGuard: strikes %d is outside 1..1000000", strikes)
	}
	if window < time.Millisecond || blockFor < time.Millisecond {
		return nil, fmt.Errorf("redisstore: NewAbuseGuard: window %v and blockFor %v must be at least 1ms", window, blockFor)
	}
	c, err := newConfig(ctx, client, opts)
	if err != nil {
		return nil, err
	}
	return &AbuseGuard{client: client, cfg: c, strikes: strikes, window: window, blockFor: blockFor}, nil
}

// key returns the Redis key of a client's abuse state.
func (g *AbuseGuard) key(client string) string {
	return g.cfg.tag(g.cfg.bucketOf(bucketKey(client))) + ":x:" + client
}

// Blocked implements realtimeauth.AbuseGuard.
func (g *AbuseGuard) Blocked(ctx context.Context, key string, now time.Time) (time.Duration, error) {
	s, err := g.client.HGet(ctx, g.key(key), "u").Result()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, wrap("abuse blocked", err)
	}
	until, err := decodeTime(s)
	if err != nil {
		return 0, wrap("abuse blocked", err)
	}
	if until.IsZero() || !until.After(now) {
		return 0, nil
	}
	return until.Sub(now), nil
}

// strikeScript: KEYS the client's state (f: window start, u: block end,
// n: strikes); ARGV now, window (ns), blockFor (ns), strikes, the window's
// and the block's TTL (ms). It returns 1 when this strike starts a block.
var strikeScript = newScript(luaTime + `
local now = T(ARGV[1])
local h = redis.call('HMGET', KEYS[1], 'f', 'u', 'n')
local blocked = h[2] and h[2] ~= ''
if blocked and before(now, T(h[2])) then return 0 end
local n = 0
if h[1] and not blocked and before(now, add(T(h[1]), tonumber(ARGV[2]))) then
  n = tonumber(h[3])
else
  h[1] = ARGV[1]
end
n = n + 1
if n >= tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[1], 'f', ARGV[1], 'u', S(add(now, tonumber(ARGV[3]))), 'n', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
  return 1
end
redis.call('HSET', KEYS[1], 'f', h[1], 'u', '', 'n', n)
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[5]) end
return 0
`)

// Strike implements realtimeauth.AbuseGuard.
func (g *AbuseGuard) Strike(ctx context.Context, key string, now time.Time) (time.Duration, bool, error) {
	started, err := strikeScript.Run(ctx, g.client, []string{g.key(key)},
		encodeTime(now), int64(g.window), int64(g.blockFor), g.strikes,
		ceilMillis(g.window+allowanceGrace), ceilMillis(g.blockFor+allowanceGrace)).Int()
	if err != nil {
		return 0, false, wrap("abuse strike", err)
	}
	if started == 1 {
		return g.blockFor, true, nil
	}
	return 0, false, nil
}

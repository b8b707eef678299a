package redisstore

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/redis/go-redis/v9"
)

// maxLimit is the largest limit the sub-window counts hold, as in
// realtimeauth.NewMemoryLimiter's limiter.
const maxLimit = 1023

// allowanceGrace is how long Redis keeps an allowance's counts past the
// last sub-window that reads them.
const allowanceGrace = time.Second

// allowanceArgs are the script arguments that decide one allowance at now:
// N, M, the sub-window length (ns), now's sub-window index modulo 2^32, the
// nanoseconds into it, and the key's TTL (ms). The index and offset are
// computed here, in integers, because Lua's doubles cannot hold Unix
// nanoseconds exactly.
func allowanceArgs(args []any, limit int, window time.Duration, now time.Time) []any {
	sub := int64(window / 4)
	ns := now.UnixNano()
	m := floorDiv(ns, sub)
	into := ns - m*sub
	return append(args, limit, max(limit+1, 5*limit/4), sub, uint32(m), into, ceilMillis(5*time.Duration(sub)+allowanceGrace))
}

// subWindowIndex is the index, modulo 2^32, of the sub-window of a window
// that holds t, as allowanceArgs passes it.
func subWindowIndex(window time.Duration, t time.Time) uint32 {
	return uint32(floorDiv(t.UnixNano(), int64(window/4)))
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}

// allowanceLua decides and charges allowances by the rule of
// realtimeauth.NewMemoryLimiter. A key's state is 14 bytes: its newest
// sub-window's index modulo 2^32 and the counts of it and the 4 sub-windows
// before it. A time whose sub-window is older than the stored one (a caller
// whose clock is behind) counts as the stored sub-window, with RetryAfter
// capped at the window, as the memory limiter does (which keeps the newest
// sub-window per shard, where Redis keeps it per key).
const allowanceLua = `
local FMT, WRAP = '<I4I2I2I2I2I2', 4294967296
local function aload(key, m)
  local c, ahead = {0, 0, 0, 0, 0}, 0
  local v = redis.call('GET', key)
  if v then
    local s = {struct.unpack(FMT, v)}
    local d = (m - s[1]) % WRAP
    if d >= WRAP / 2 then ahead, d = WRAP - d, 0 end
    for k = 1 + d, 5 do c[k] = s[1 + k - d] end
  end
  return c, ahead
end
local function adecide(a)
  local c = a.c
  local s4 = c[1] + c[2] + c[3] + c[4]
  if s4 + 1 <= a.N and s4 + c[5] + 1 <= a.M then return 0 end
  for k = 1, 4 do
    local s = 0
    for i = 1, 4 - k do s = s + c[i] end
    if s + 1 <= a.N and s + c[5 - k] + 1 <= a.M then return math.min((a.ahead + k) * a.sub - a.into, 4 * a.sub) end
  end
  return 4 * a.sub -- not reached: the fourth boundary always admits
end
-- allowances reads n allowances, keys from KEYS[k0+1], arguments from
-- ARGV[a0+1], and decides each.
local function allowances(k0, a0, n)
  local list = {}
  for i = 1, n do
    local j = a0 + (i - 1) * 6
    local a = {key = KEYS[k0 + i], N = tonumber(ARGV[j + 1]), M = tonumber(ARGV[j + 2]),
      sub = tonumber(ARGV[j + 3]), m = tonumber(ARGV[j + 4]), into = tonumber(ARGV[j + 5]), ttl = ARGV[j + 6]}
    a.c, a.ahead = aload(a.key, a.m)
    a.wait = adecide(a)
    list[i] = a
  end
  return list
end
-- refusal returns the first refusing allowance's position and wait (ns).
local function refusal(list)
  for i, a in ipairs(list) do
    if a.wait > 0 then return i, a.wait end
  end
end
-- charge counts one event in every allowance and returns the sub-window
-- indexes charged (for uncharge).
local function charge(list)
  local idx = {}
  for i, a in ipairs(list) do
    local c, m = a.c, (a.m + a.ahead) % WRAP
    redis.call('SET', a.key, struct.pack(FMT, m, c[1] + 1, c[2], c[3], c[4], c[5]), 'PX', a.ttl)
    idx[i] = m
  end
  return idx
end
-- uncharge takes back one event counted at sub-window m, if the key still
-- holds it.
local function uncharge(key, m)
  local v = redis.call('GET', key)
  if not v then return end
  local s = {struct.unpack(FMT, v)}
  local d = (s[1] - m) % WRAP
  if d <= 4 and s[2 + d] > 0 then
    s[2 + d] = s[2 + d] - 1
    redis.call('SET', key, struct.pack(FMT, s[1], s[2], s[3], s[4], s[5], s[6]), 'KEEPTTL')
  end
end
`

// Limiter is a realtimeauth.Limiter kept in Redis, shared by every instance
// that uses the same Redis and prefix. It applies exactly the rule of
// realtimeauth.NewMemoryLimiter (4 sub-windows per window, aligned on the Unix
// epoch), deciding with the time the caller passes, so that memory and
// Redis agree, in one Lua script: one round trip per decision, atomic
// across instances. A key's bucket is the hash of its client address (see
// Keys in the package doc), or of the key when it is not an address.
type Limiter struct {
	client   redis.UniversalClient
	cfg      config
	limit    int
	window   time.Duration
	failOpen bool
	logger   *slog.Logger
	lastLog  atomic.Int64 // Unix nanoseconds of the last fail-open log line
}

var _ realtimeauth.Limiter = (*Limiter)(nil)

// NewLimiter returns a Limiter admitting limit events per window for each
// key. limit must be in 1..1023 and window a positive multiple of 4ns, as
// for realtimeauth.NewMemoryLimiter. It checks maxmemory-policy (see
// WithoutPolicyCheck) and loads its script. Options: WithPrefix,
// WithBuckets, WithoutPolicyCheck, WithFailOpen.
func NewLimiter(ctx context.Context, client redis.UniversalClient, limit int, window time.Duration, opts ...Option) (*Limiter, error) {
	if limit < 1 || limit > maxLimit {
		return nil, fmt.Errorf("redisstore: NewLimiter: limit %d is outside 1..%d", limit, maxLimit)
	}
	if window <= 0 || window%4 != 0 {
		return nil, fmt.Errorf("redisstore: NewLimiter: window %v must be positive and a multiple of 4ns", window)
	}
	c, err := newConfig(ctx, client, opts)
	if err != nil {
		return nil, err
	}
	return &Limiter{client: client, cfg: c, limit: limit, window: window, failOpen: c.failOpen, logger: c.logger}, nil
}

// limitScript: KEYS the key's counts; ARGV the allowance's arguments. It
// returns the wait in nanoseconds: 0 when admitted (and counted).
var limitScript = newScript(allowanceLua + `
local a = allowances(0, 0, 1)
if a[1].wait > 0 then return a[1].wait end
charge(a)
return 0
`)

// Allow implements realtimeauth.Limiter.
func (l *Limiter) Allow(ctx context.Context, key string, now time.Time) (realtimeauth.Decision, error) {
	k := l.cfg.tag(l.cfg.bucketOf(bucketKey(key))) + ":a:" + key
	wait, err := limitScript.Run(ctx, l.client, []string{k}, allowanceArgs(nil, l.limit, l.window, now)...).Int64()
	if err != nil {
		err = wrap("limiter", err)
		if l.failOpen {
			l.logFailOpen(ctx, err)
			return realtimeauth.Decision{Allowed: true}, nil
		}
		return realtimeauth.Decision{}, err
	}
	if wait == 0 {
		return realtimeauth.Decision{Allowed: true}, nil
	}
	return realtimeauth.Decision{RetryAfter: time.Duration(wait)}, nil
}

func (l *Limiter) logFailOpen(ctx context.Context, err error) {
	now := time.Now().UnixNano()
	last := l.lastLog.Load()
	if now-last < int64(time.Second) || !l.lastLog.CompareAndSwap(last, now) {
		return
	}
	l.logger.WarnContext(ctx, "redisstore: limiter failed open: admitting requests while redis is unreachable",
		"error", err.Error())
}

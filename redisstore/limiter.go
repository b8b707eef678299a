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

// Limiter is a realtimeauth.Limiter kept in Redis, shared by every instance
// that uses the same Redis and prefix. It applies exactly the rule of
// realtimeauth.MemoryLimiter (a two-window weighted counter: an event at a
// fraction f into the current window is admitted when
// previous*(1-f) + current + 1 <= limit; only admitted events count), with
// windows aligned on the Unix epoch, in one Lua script: one round trip per
// decision, atomic across instances.
//
// The clock is the Redis server's (TIME) unless WithClock is given, so that
// instances agree on the windows whatever their own clocks say.
type Limiter struct {
	client   redis.UniversalClient
	limit    int
	window   time.Duration
	prefix   string
	now      func() time.Time
	failOpen bool
	logger   *slog.Logger
	lastLog  atomic.Int64 // Unix nanoseconds of the last fail-open log line
}

var _ realtimeauth.Limiter = (*Limiter)(nil)

// NewLimiter returns a Limiter admitting limit events per window for each
// key. limit must be in 1..realtimeauth.MaxMemoryLimit and window a whole
// number of milliseconds, at least one (the server's clock reads
// microseconds). Options: WithPrefix, WithClock, WithFailOpen.
func NewLimiter(client redis.UniversalClient, limit int, window time.Duration, opts ...Option) (*Limiter, error) {
	c, err := newConfig(client, opts)
	if err != nil {
		return nil, err
	}
	if limit < 1 || limit > realtimeauth.MaxMemoryLimit {
		return nil, fmt.Errorf("redisstore: NewLimiter: limit %d is outside 1..%d", limit, realtimeauth.MaxMemoryLimit)
	}
	if window < time.Millisecond || window%time.Millisecond != 0 {
		return nil, fmt.Errorf("redisstore: NewLimiter: window %v is not a whole number of milliseconds, at least 1ms", window)
	}
	return &Limiter{
		client: client, limit: limit, window: window, prefix: c.key("limit"),
		now: c.now, failOpen: c.failOpen, logger: c.logger,
	}, nil
}

// limitScript: KEYS[1] the key's state; ARGV limit, window (ns), TTL (ms),
// and, with an injected clock, the window index and the nanoseconds into it.
// It returns {allowed, remaining, retry-after in ms}. It applies
// MemoryLimiter.decide's rule (which works in exact integer nanoseconds) in
// Lua's doubles; the conformance test requires both to decide alike to the
// millisecond.
var limitScript = redis.NewScript(`
redis.replicate_commands() -- writes after TIME: needed before Redis 5, a no-op since
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local win, into
if ARGV[4] then
  win, into = tonumber(ARGV[4]), tonumber(ARGV[5])
else
  local t = redis.call('TIME')
  local us, wus = tonumber(t[1]) * 1000000 + tonumber(t[2]), window / 1000
  local intous = math.fmod(us, wus)
  win, into = (us - intous) / wus, intous * 1000
end
local prev, cur = 0, 0
local st = redis.call('HMGET', KEYS[1], 'w', 'p', 'c')
if st[1] then
  local sw = tonumber(st[1])
  if sw >= win then
    -- the same window, or a caller whose clock is behind the one that
    -- wrote it: count against the newer window rather than forget it
    win, prev, cur = sw, tonumber(st[2]), tonumber(st[3])
  elseif sw == win - 1 then
    prev = tonumber(st[3])
  end
end
local frac = into / window
local est = prev * (1 - frac) + cur
if est + 1 <= limit then
  redis.call('HSET', KEYS[1], 'w', string.format('%.0f', win), 'p', prev, 'c', cur + 1)
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {1, math.floor(limit - est - 1), 0}
end
local wait
if cur + 1 > limit then
  wait = window - into + window * (1 - (limit - 1) / cur)
else
  wait = window * (1 - (limit - cur - 1) / prev) - into
end
return {0, 0, math.ceil(wait / 1000000)}
`)

// Allow implements realtimeauth.Limiter.
func (l *Limiter) Allow(ctx context.Context, key string) (realtimeauth.Decision, error) {
	args := []any{l.limit, int64(l.window), 2 * l.window.Milliseconds()}
	if l.now != nil {
		ns := l.now().UnixNano()
		w := int64(l.window)
		args = append(args, ns/w, ns%w)
	}
	v, err := limitScript.Run(ctx, l.client, []string{l.prefix + key}, args...).Int64Slice()
	if err == nil && len(v) != 3 {
		err = fmt.Errorf("unexpected reply %v", v)
	}
	if err != nil {
		err = wrap("limiter", err)
		if l.failOpen {
			l.logFailOpen(ctx, err)
			return realtimeauth.Decision{Allowed: true, Limit: l.limit}, nil
		}
		return realtimeauth.Decision{}, err
	}
	return realtimeauth.Decision{
		Allowed:    v[0] == 1,
		Limit:      l.limit,
		Remaining:  int(v[1]),
		RetryAfter: time.Duration(v[2]) * time.Millisecond,
	}, nil
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

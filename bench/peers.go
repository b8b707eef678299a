// Package bench puts realtimeauth's in-memory limiter side by side with the
// limiters a Go user would otherwise pick, on the same workloads in the
// same run, and holds the load program (cmd/load) that drives the whole
// handler over loopback. It is a separate module so that the peers'
// dependencies stay out of realtimeauth's go.mod.
package bench

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/go-chi/httprate"
	"github.com/realtimeauth/realtimeauth"
	sethlimiter "github.com/sethvargo/go-limiter"
	"github.com/sethvargo/go-limiter/memorystore"
	"github.com/throttled/throttled/v2"
	"github.com/throttled/throttled/v2/store/memstore"
	"github.com/ulule/limiter/v3"
	ulmemory "github.com/ulule/limiter/v3/drivers/store/memory"
	"golang.org/x/time/rate"
)

// Decider is the one question every peer answers: may key proceed now (and
// count it if so)?
type Decider interface {
	Allow(key string) bool
	Close()
}

// Peer builds a Decider admitting limit events per window for each key.
type Peer struct {
	Name string
	New  func(limit int, window time.Duration) Decider
}

// Peers are the limiters compared, ours first.
var Peers = []Peer{
	{"realtimeauth", newOurs},
	{"sethvargo/go-limiter", newSethvargo},
	{"throttled/v2 GCRA", newThrottled},
	{"x/time/rate map+mutex", newXRate},
	{"go-chi/httprate local", newHTTPRate},
	{"ulule/limiter memory", newUlule},
}

var background = context.Background()

// ours is realtimeauth.NewMemoryLimiter's limiter. Its key cap (a memory
// bound of 1,000,000, held per shard) makes it forget a few thousand of the
// million-key measurement's keys (under 1%), which that measurement
// divides by all the same. The time is read per decision, as every peer
// reads its own clock (the handler reads it once per request and passes it
// to every decision).
type ours struct{ l realtimeauth.Limiter }

func newOurs(limit int, window time.Duration) Decider {
	l, err := realtimeauth.NewMemoryLimiter(limit, window)
	if err != nil {
		panic(err)
	}
	return ours{l}
}

func (o ours) Allow(key string) bool {
	d, _ := o.l.Allow(background, key, time.Now())
	return d.Allowed
}
func (ours) Close() {}

// sethvargo is github.com/sethvargo/go-limiter's memorystore (a token
// bucket per key).
type sethvargo struct{ s sethlimiter.Store }

func newSethvargo(limit int, window time.Duration) Decider {
	s, err := memorystore.New(&memorystore.Config{Tokens: uint64(limit), Interval: window})
	if err != nil {
		panic(err)
	}
	return sethvargo{s}
}

func (p sethvargo) Allow(key string) bool {
	_, _, _, ok, _ := p.s.Take(background, key)
	return ok
}
func (p sethvargo) Close() { _ = p.s.Close(background) }

// throttledGCRA is github.com/throttled/throttled/v2's GCRA limiter on its
// memstore without an LRU bound (a bound adds a list per key).
type throttledGCRA struct{ l *throttled.GCRARateLimiterCtx }

func newThrottled(limit int, window time.Duration) Decider {
	st, err := memstore.NewCtx(0)
	if err != nil {
		panic(err)
	}
	l, err := throttled.NewGCRARateLimiterCtx(st, throttled.RateQuota{
		MaxRate:  throttled.PerDuration(limit, window),
		MaxBurst: limit - 1, // a burst of limit events, as the others admit
	})
	if err != nil {
		panic(err)
	}
	return throttledGCRA{l}
}

func (p throttledGCRA) Allow(key string) bool {
	limited, _, err := p.l.RateLimitCtx(background, key, 1)
	return err == nil && !limited
}
func (throttledGCRA) Close() {}

// xRate is golang.org/x/time/rate, one token bucket per key in a map under
// a mutex: what a user writes by hand.
type xRate struct {
	mu    sync.Mutex
	m     map[string]*rate.Limiter
	limit rate.Limit
	burst int
}

func newXRate(limit int, window time.Duration) Decider {
	return &xRate{m: make(map[string]*rate.Limiter), limit: rate.Limit(float64(limit) / window.Seconds()), burst: limit}
}

func (p *xRate) Allow(key string) bool {
	p.mu.Lock()
	l, ok := p.m[key]
	if !ok {
		l = rate.NewLimiter(p.limit, p.burst)
		p.m[key] = l
	}
	p.mu.Unlock()
	return l.Allow()
}
func (*xRate) Close() {}

// httpRate is go-chi/httprate's local counter (NewLocalLimitCounter),
// decided exactly as httprate's RateLimiter.OnLimit does: the sliding
// window estimate from Get, then IncrementBy, both under the limiter's one
// mutex (the counter alone is not an atomic check-and-count).
type httpRate struct {
	mu     sync.Mutex
	c      httprate.LimitCounter
	limit  int
	window time.Duration
}

func newHTTPRate(limit int, window time.Duration) Decider {
	c := httprate.NewLocalLimitCounter(window)
	c.Config(limit, window)
	return &httpRate{c: c, limit: limit, window: window}
}

func (p *httpRate) Allow(key string) bool {
	now := time.Now().UTC()
	cur := now.Truncate(p.window)
	p.mu.Lock()
	defer p.mu.Unlock()
	curCount, prevCount, err := p.c.Get(key, cur, cur.Add(-p.window))
	if err != nil {
		return false
	}
	diff := now.Sub(cur)
	est := float64(prevCount)*(float64(p.window)-float64(diff))/float64(p.window) + float64(curCount)
	if int(math.Round(est))+1 > p.limit {
		return false
	}
	return p.c.IncrementBy(key, cur, 1) == nil
}
func (*httpRate) Close() {}

// ulule is github.com/ulule/limiter/v3 with its memory store (a fixed
// window counter per key).
type ulule struct{ l *limiter.Limiter }

func newUlule(limit int, window time.Duration) Decider {
	return ulule{limiter.New(ulmemory.NewStore(), limiter.Rate{Period: window, Limit: int64(limit)})}
}

func (p ulule) Allow(key string) bool {
	c, err := p.l.Get(background, key)
	return err == nil && !c.Reached
}
func (ulule) Close() {}

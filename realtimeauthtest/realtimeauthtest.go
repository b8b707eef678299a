// Package realtimeauthtest provides test doubles for code that uses
// realtimeauth: a fake clock (Clock), a fake clock with timers (TimerClock),
// a fake Minter, a recorder of security events (Events) and a log buffer
// safe for concurrent writers (Buffer). OpenAI itself is the only part that
// should be faked; use the real in-memory (or Redis) stores.
//
// It also holds the conformance suites, one per interface, that every
// implementation runs (the in-memory ones and redisstore's alike):
// TestSessionStore, TestLimiter, TestAbuseGuard and TestCallRegistry (for
// a calls.Registry). A new backend passes them from its own test:
//
//	func TestConformance(t *testing.T) {
//		realtimeauthtest.TestSessionStore(t, func(t *testing.T) realtimeauth.SessionStore {
//			return newStoreForTest(t)
//		})
//	}
package realtimeauthtest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/realtimeauth/realtimeauth"
)

// Clock is a fake clock, safe for concurrent use. Pass its Now method to
// realtimeauth.WithClock and the like, and move it with Advance.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a Clock reading t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// Minter is a fake realtimeauth.Minter. By default it returns tokens
// "ek_test_1", "ek_test_2", … expiring TTL after its clock's time. It
// records every request, can be made to fail, and can be held so that
// mints stay in flight. It is safe for concurrent use.
type Minter struct {
	// Now is the clock for ExpiresAt; nil means time.Now.
	Now func() time.Time
	// Func, when set, replaces the default behaviour (the call is still
	// counted and recorded).
	Func func(ctx context.Context, req realtimeauth.MintRequest) (realtimeauth.Token, error)

	mu       sync.Mutex
	calls    int
	err      error
	requests []realtimeauth.MintRequest
	gate     chan struct{}
	hangups  []string // minter_calls.go
}

var _ realtimeauth.Minter = (*Minter)(nil)

// Mint implements realtimeauth.Minter.
func (m *Minter) Mint(ctx context.Context, req realtimeauth.MintRequest) (realtimeauth.Token, error) {
	m.mu.Lock()
	m.calls++
	n := m.calls
	m.requests = append(m.requests, req)
	err, gate, fn := m.err, m.gate, m.Func
	m.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return realtimeauth.Token{}, ctx.Err()
		}
	}
	if fn != nil {
		return fn(ctx, req)
	}
	if err != nil {
		return realtimeauth.Token{}, err
	}
	now := time.Now
	if m.Now != nil {
		now = m.Now
	}
	return realtimeauth.Token{Value: fmt.Sprintf("ek_test_%d", n), ExpiresAt: now().Add(req.TTL)}, nil
}

// Local reports that the fake mints in-process, so the handler sets no
// deadline on it (see realtimeauth.Minter), unless Func is set: a Func may
// wait on its context like a real upstream.
func (m *Minter) Local() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.Func == nil
}

// Calls returns how many times Mint was called.
func (m *Minter) Calls() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls
}

// Requests returns a copy of every request received.
func (m *Minter) Requests() []realtimeauth.MintRequest {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]realtimeauth.MintRequest(nil), m.requests...)
}

// SetError makes every following Mint fail with err (nil restores success).
func (m *Minter) SetError(err error) {
	m.mu.Lock()
	m.err = err
	m.mu.Unlock()
}

// Hold makes following mints wait until Release (or their context ends).
func (m *Minter) Hold() {
	m.mu.Lock()
	if m.gate == nil {
		m.gate = make(chan struct{})
	}
	m.mu.Unlock()
}

// Release lets held mints, and every later one, proceed.
func (m *Minter) Release() {
	m.mu.Lock()
	if m.gate != nil {
		close(m.gate)
		m.gate = nil
	}
	m.mu.Unlock()
}

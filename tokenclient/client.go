// Package tokenclient keeps a valid realtimeauth token at hand in a Go
// program: it fetches one from a realtimeauth handler, refreshes it before
// it expires, retries with backoff, starts a new session when the old one
// is gone, and shares one request between concurrent callers.
//
//	c, err := tokenclient.New("https://app.example.com/api/voice-agent",
//		tokenclient.WithHeader("Authorization", "Bearer "+userToken),
//		tokenclient.WithEvents(tokenclient.Events{
//			Expired: func(tokenclient.TokenData) { log.Print("voice token expired") },
//		}),
//	)
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer c.Close()
//	tok, err := c.Token(ctx) // valid for at least WithMinValidity
//
// Expiry is measured on the local clock from the server's expiresIn, never
// from its expiresAt, so a client whose clock is off still refreshes on
// time. Tokens live in memory only.
package tokenclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/realtimeauth/realtimeauth/internal/redirect"
)

// TokenData is a token and what the server said about it.
type TokenData struct {
	// Token is the ephemeral key (ek_…). String and LogValue redact it.
	Token string
	// SessionID is the server's session, which refreshes extend.
	SessionID string
	// ExpiresAt is when the token expires by the local clock: the time the
	// request was sent plus ExpiresIn. It is never later than the true
	// expiry, whatever the offset between the local and the server clocks.
	ExpiresAt time.Time
	// ExpiresIn is the token's remaining life when the server answered.
	ExpiresIn time.Duration
	// ServerTime is the server's clock when it answered.
	ServerTime time.Time
	// ServerExpiresAt is the expiry by the server's clock, for information:
	// compare it with ServerTime, never with the local clock.
	ServerExpiresAt time.Time
}

// String describes t without the token itself.
func (t TokenData) String() string {
	return fmt.Sprintf("TokenData{Token: %s, SessionID: %s, ExpiresAt: %s, ExpiresIn: %s}",
		redacted(t.Token), t.SessionID, t.ExpiresAt.Format(time.RFC3339), t.ExpiresIn)
}

// GoString is String, so that %#v does not print the token either.
func (t TokenData) GoString() string { return t.String() }

// LogValue lets log/slog log t without the token itself.
func (t TokenData) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("token", redacted(t.Token)),
		slog.String("sessionId", t.SessionID),
		slog.Time("expiresAt", t.ExpiresAt),
	)
}

func redacted(tok string) string {
	if tok == "" {
		return `""`
	}
	return "[redacted]"
}

// Client holds a token from a realtimeauth handler and keeps it fresh. It
// is safe for concurrent use. Close it when done.
type Client struct {
	base      string
	origin    string // base's scheme://host:port: the only source of tokens
	cfg       config
	ctx       context.Context // ends at Close; every request runs under it
	cancel    context.CancelFunc
	wg        sync.WaitGroup // request goroutines
	evMu      sync.Mutex     // events run one at a time
	eventsOff bool           // set by Close, under evMu

	mu          sync.Mutex
	closed      bool
	cur         *held  // nil: no live token
	sessionID   string // the last session, kept after its token expired
	flight      *flight
	stopRefresh func() bool
	stopExpiry  func() bool
}

// held is the current token and when to refresh it.
type held struct {
	data      TokenData
	refreshAt time.Time
}

// flight is one round of requests (with its retries) that every caller
// of Token arriving meanwhile waits for.
type flight struct {
	done chan struct{}
	tok  TokenData
	err  error
}

// New returns a Client for the realtimeauth handler mounted at baseURL, for
// example "https://app.example.com/api/voice-agent". It makes no request:
// the first token is fetched by the first Token call.
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("tokenclient: New: base URL %q must be an http or https URL without credentials, query or fragment", baseURL)
	}
	cfg := config{header: http.Header{}, set: map[string]bool{}}
	for _, o := range opts {
		if o == nil {
			return nil, errors.New("tokenclient: New: nil Option")
		}
		o(&cfg)
	}
	if err := cfg.resolve(); err != nil {
		return nil, err
	}
	origin := redirect.Origin(u)
	if !cfg.ownClient {
		cfg.httpClient = redirect.SameOrigin(cfg.httpClient, origin)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Client{base: strings.TrimRight(u.String(), "/"), origin: origin, cfg: cfg, ctx: ctx, cancel: cancel}, nil
}

// Token returns a token valid for at least WithMinValidity (default 5s).
// It returns the current token when it is, and otherwise waits for a new
// one: a refresh of the session, or a new session. Concurrent callers share
// one request. ctx bounds only this caller's wait: the request goes on for
// the others and for the next call. The error is an *Error (the last
// failure of a round of retries), ctx's error, or ErrClosed.
func (c *Client) Token(ctx context.Context) (TokenData, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return TokenData{}, ErrClosed
	}
	now := c.cfg.clock.Now()
	if h := c.cur; h != nil && now.Before(h.data.ExpiresAt.Add(-c.cfg.minValidity)) {
		if !now.Before(h.refreshAt) {
			c.startLocked() // due (auto-refresh off, or its timer is late)
		}
		c.mu.Unlock()
		return h.data, nil
	}
	if err := ctx.Err(); err != nil {
		c.mu.Unlock()
		return TokenData{}, err
	}
	f := c.startLocked()
	c.mu.Unlock()
	select {
	case <-f.done:
		return f.tok, f.err
	case <-ctx.Done():
		return TokenData{}, ctx.Err()
	}
}

// Close stops the timers, cancels the request in flight (its waiting
// callers get ErrClosed), forgets the token and waits until the client's
// goroutines have ended. No event is delivered after Close returns. Every
// later call fails with ErrClosed. Close is idempotent; it must not be
// called from an event callback.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.stopTimersLocked()
	c.cur = nil
	c.sessionID = ""
	c.mu.Unlock()
	// An event already running ends before Close goes on; any later one is
	// dropped.
	c.evMu.Lock()
	c.eventsOff = true
	c.evMu.Unlock()
	c.cancel()
	c.wg.Wait()
	if c.cfg.ownClient {
		c.cfg.httpClient.CloseIdleConnections()
	}
	return nil
}

func (c *Client) stopTimersLocked() {
	if c.stopRefresh != nil {
		c.stopRefresh()
		c.stopRefresh = nil
	}
	if c.stopExpiry != nil {
		c.stopExpiry()
		c.stopExpiry = nil
	}
}

// startLocked returns the flight in progress, or starts one.
func (c *Client) startLocked() *flight {
	if c.flight != nil {
		return c.flight
	}
	f := &flight{done: make(chan struct{})}
	c.flight = f
	c.wg.Add(1)
	go c.run(f, c.sessionID)
	return f
}

// run performs one flight and hands its result to the state, the events
// and the waiting callers, in that order.
func (c *Client) run(f *flight, sessionID string) {
	defer c.wg.Done()
	tok, err := c.round(sessionID)
	c.mu.Lock()
	c.flight = nil
	switch {
	case c.closed:
		tok, err = TokenData{}, ErrClosed
	case err == nil:
		c.installLocked(tok)
	default:
		c.retryLaterLocked(err)
	}
	c.mu.Unlock()
	var e *Error
	switch {
	case err == nil:
		c.emit(func(ev *Events) {
			if ev.Refreshed != nil {
				ev.Refreshed(tok)
			}
		})
	case errors.As(err, &e):
		// After the flight is cleared: whoever hears of the last failure
		// of a round and calls Token starts a new round.
		c.emitError(e)
	}
	f.tok, f.err = tok, err
	close(f.done)
}

// installLocked makes tok the current token and schedules its refresh and
// its expiry, both on the local clock.
func (c *Client) installLocked(tok TokenData) {
	c.stopTimersLocked()
	now := c.cfg.clock.Now()
	lead := min(c.cfg.leadTime, tok.ExpiresIn/2)
	jitter := time.Duration(c.cfg.rand() * float64(min(c.cfg.jitter, lead/2)))
	h := &held{data: tok, refreshAt: tok.ExpiresAt.Add(-lead + jitter)}
	c.cur, c.sessionID = h, tok.SessionID
	if !c.cfg.noAuto {
		c.stopRefresh = c.cfg.clock.AfterFunc(h.refreshAt.Sub(now), c.refreshDue)
	}
	c.stopExpiry = c.cfg.clock.AfterFunc(tok.ExpiresAt.Sub(now), func() { c.expire(h) })
}

// retryLaterLocked puts off the next round after a failed one by the
// backoff cap, so that neither the timer nor callers of Token hammer the
// server; the current token stays in use until it expires. The timer is
// set only for failures that may pass, and only while the token lives.
func (c *Client) retryLaterLocked(err error) {
	if c.cur == nil {
		return
	}
	next := c.cfg.clock.Now().Add(c.cfg.cap)
	c.cur.refreshAt = next
	var e *Error
	if c.cfg.noAuto || !errors.As(err, &e) || !e.Retryable() || !next.Before(c.cur.data.ExpiresAt) {
		return
	}
	if c.stopRefresh != nil {
		c.stopRefresh()
	}
	c.stopRefresh = c.cfg.clock.AfterFunc(c.cfg.cap, c.refreshDue)
}

func (c *Client) refreshDue() {
	c.mu.Lock()
	if !c.closed {
		c.startLocked()
	}
	c.mu.Unlock()
}

// expire ends h's life, unless it has been replaced.
func (c *Client) expire(h *held) {
	c.mu.Lock()
	if c.closed || c.cur != h {
		c.mu.Unlock()
		return
	}
	c.cur = nil
	c.mu.Unlock()
	c.emit(func(e *Events) {
		if e.Expired != nil {
			e.Expired(h.data)
		}
	})
}

func (c *Client) emitError(e *Error) {
	c.emit(func(ev *Events) {
		if ev.Error != nil {
			ev.Error(e)
		}
	})
}

func (c *Client) emit(call func(*Events)) {
	c.evMu.Lock()
	defer c.evMu.Unlock()
	if !c.eventsOff {
		call(&c.cfg.events)
	}
}

// round asks for a token until it gets one or gives up: a refresh of
// sessionID ("" for none), a new session as soon as the old one is gone,
// retries with backoff for what may pass.
func (c *Client) round(sessionID string) (TokenData, error) {
	failures := 0
	for attempt := 1; ; attempt++ {
		tok, e := c.request(sessionID, attempt)
		if e == nil {
			return tok, nil
		}
		if c.ctx.Err() != nil {
			return TokenData{}, ErrClosed
		}
		if sessionID != "" && e.SessionGone() {
			// Not a failure to back off from: start a new session at once.
			c.emitError(e)
			c.forgetSession(sessionID)
			sessionID = ""
			continue
		}
		failures++
		if !e.Retryable() || failures >= c.cfg.attempts {
			return TokenData{}, e // run reports it once the round is over
		}
		c.emitError(e)
		if err := c.sleep(c.backoff(failures, e.RetryAfter)); err != nil {
			return TokenData{}, err
		}
	}
}

func (c *Client) forgetSession(id string) {
	c.mu.Lock()
	if c.sessionID == id {
		c.sessionID = ""
	}
	c.mu.Unlock()
}

// backoff is the wait before retry n (from 1): full jitter over
// min(cap, base·2^(n-1)), and at least the server's retryAfter.
func (c *Client) backoff(n int, retryAfter time.Duration) time.Duration {
	ceil := c.cfg.base
	for i := 1; i < n && ceil < c.cfg.cap; i++ {
		ceil *= 2
	}
	ceil = min(ceil, c.cfg.cap)
	return max(time.Duration(c.cfg.rand()*float64(ceil)), retryAfter)
}

// sleep waits d on the client's clock, or until Close.
func (c *Client) sleep(d time.Duration) error {
	ch := make(chan struct{})
	stop := c.cfg.clock.AfterFunc(d, func() { close(ch) })
	select {
	case <-ch:
		return nil
	case <-c.ctx.Done():
		stop()
		return ErrClosed
	}
}

var _ Clock = systemClock{}

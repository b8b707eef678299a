package tokenclient

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/textproto"
	"time"

	"github.com/realtimeauth/realtimeauth/internal/redirect"
)

// Defaults.
const (
	DefaultLeadTime    = 30 * time.Second
	DefaultJitter      = 5 * time.Second
	DefaultMinValidity = 5 * time.Second
	DefaultBackoffBase = time.Second
	DefaultBackoffCap  = 10 * time.Second
	DefaultAttempts    = 5
	// DefaultTimeout bounds each request of the default *http.Client.
	DefaultTimeout = 30 * time.Second
)

// Clock is the client's source of time. The default reads the system
// clock and uses time.AfterFunc. Tests pass a fake (see
// realtimeauthtest.TimerClock) so that refresh and backoff timers fire
// when the test advances the time.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// AfterFunc calls f once d has elapsed, on a goroutine of its choice,
	// unless stop is called first. stop reports whether it cancelled f.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}

// Events are the client's callbacks; a nil func is not called. They run one
// at a time, on the client's own goroutines, and must return promptly: they
// must not call Close, nor call Token from Error (Token waits for the
// request whose failure Error reports).
type Events struct {
	// Refreshed is called with every new token, the first one included,
	// before the callers of Token waiting for it get it.
	Refreshed func(TokenData)
	// Expired is called when a token's life ends without a replacement
	// (for example while the server keeps failing). Token then fetches a
	// new one on its next call.
	Expired func(TokenData)
	// Error is called on every failed attempt to fetch or refresh a token,
	// retried or not; the last attempt of a round is reported once the
	// round is over (the next Token call starts a new one), before the
	// waiting callers of Token get the error. It is not called for
	// requests cut short by Close.
	Error func(*Error)
}

// Option configures a Client. Options record what they are given; New
// fills the defaults afterwards and rejects bad values with an error that
// names the option.
type Option func(*config)

type config struct {
	httpClient  *http.Client
	ownClient   bool
	leadTime    time.Duration
	jitter      time.Duration
	minValidity time.Duration
	base, cap   time.Duration
	attempts    int
	header      http.Header
	clock       Clock
	noAuto      bool
	events      Events
	rand        func() float64
	errs        []error
	set         map[string]bool
}

func (c *config) bad(format string, a ...any) {
	c.errs = append(c.errs, fmt.Errorf("tokenclient: "+format, a...))
}

// WithHTTPClient sets the *http.Client for requests. Default: a client of
// its own with a DefaultTimeout (30s) request timeout that follows no
// redirect, whose idle connections Close closes. A client passed here is
// left open, and is used through a copy that follows redirects only within
// the base URL's origin (scheme, host and port), under its own
// CheckRedirect: the headers of WithHeader never go to another host, and a
// token is only taken from the base URL's origin. A refused redirect is an
// *Error whose Err is ErrRedirect.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *config) {
		if hc == nil {
			c.bad("WithHTTPClient: nil *http.Client")
		}
		c.httpClient = hc
	}
}

// WithLeadTime sets how long before a token's expiry it is refreshed.
// Default 30s; any d >= 0. For each token it is capped at half the token's
// life, so a 20s token is refreshed 10s before it expires.
func WithLeadTime(d time.Duration) Option {
	return func(c *config) {
		if d < 0 {
			c.bad("WithLeadTime: %v is negative", d)
		}
		c.leadTime, c.set["lead"] = d, true
	}
}

// WithJitter sets the jitter of the refresh time: each refresh happens a
// random time of up to d after "expiry minus lead time", so that a fleet of
// clients spreads out. Default 5s; any d >= 0. For each token it is capped
// at half the lead time, so a refresh never comes later than half the lead
// time before expiry.
func WithJitter(d time.Duration) Option {
	return func(c *config) {
		if d < 0 {
			c.bad("WithJitter: %v is negative", d)
		}
		c.jitter, c.set["jitter"] = d, true
	}
}

// WithMinValidity sets how long a token must still be valid for Token to
// return it without waiting for a new one. Default 5s; any d >= 0.
func WithMinValidity(d time.Duration) Option {
	return func(c *config) {
		if d < 0 {
			c.bad("WithMinValidity: %v is negative", d)
		}
		c.minValidity, c.set["minValidity"] = d, true
	}
}

// WithBackoff sets the retry policy: up to attempts requests per round,
// the wait before retry n (n = 1, 2, …) drawn uniformly from
// [0, min(maxWait, base·2^(n-1))] ("full jitter"), and never shorter than
// the server's Retry-After. Defaults 1s, 10s and 5 attempts; base > 0,
// maxWait >= base, attempts >= 1 (1 means no retry).
func WithBackoff(base, maxWait time.Duration, attempts int) Option {
	return func(c *config) {
		if base <= 0 || maxWait < base || attempts < 1 {
			c.bad("WithBackoff: base %v, maxWait %v, attempts %d: need base > 0, maxWait >= base, attempts >= 1", base, maxWait, attempts)
		}
		c.base, c.cap, c.attempts, c.set["backoff"] = base, maxWait, attempts, true
	}
}

// WithHeader adds a header to every request, for example the Authorization
// the server's authenticator expects. Default none. The key must be a valid
// header name other than Content-Type, and the value must not contain line
// breaks.
func WithHeader(key, value string) Option {
	return func(c *config) {
		k := textproto.CanonicalMIMEHeaderKey(key)
		if !validHeaderName(key) || k == "Content-Type" {
			c.bad("WithHeader: %q is not a header this client can send", key)
			return
		}
		for i := 0; i < len(value); i++ {
			if value[i] == '\r' || value[i] == '\n' || value[i] == 0 {
				c.bad("WithHeader: the value for %q contains a line break or NUL", k)
				return
			}
		}
		c.header.Add(k, value)
	}
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		ok := b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' ||
			b == '-' || b == '!' || b == '#' || b == '$' || b == '%' || b == '&' || b == '\'' ||
			b == '*' || b == '+' || b == '.' || b == '^' || b == '_' || b == '`' || b == '|' || b == '~'
		if !ok {
			return false
		}
	}
	return true
}

// WithClock sets the client's clock, for tests. Default: the system clock.
func WithClock(clk Clock) Option {
	return func(c *config) {
		if clk == nil {
			c.bad("WithClock: nil Clock")
		}
		c.clock = clk
	}
}

// WithAutoRefresh turns the background refresh on or off. Default on. Off,
// the client refreshes only when Token is called: at or after the refresh
// time it still returns the current token (while it is valid for
// WithMinValidity) and starts the refresh in the background.
func WithAutoRefresh(on bool) Option {
	return func(c *config) { c.noAuto = !on }
}

// WithEvents sets the event callbacks. Default none.
func WithEvents(e Events) Option {
	return func(c *config) { c.events = e }
}

// WithRand sets the source of the jitter of refresh times and backoff
// waits, a func returning values in [0, 1), for tests. Default
// math/rand/v2's Float64.
func WithRand(f func() float64) Option {
	return func(c *config) {
		if f == nil {
			c.bad("WithRand: nil func")
		}
		c.rand = f
	}
}

func (c *config) resolve() error {
	if c.httpClient == nil {
		c.httpClient, c.ownClient = &http.Client{Timeout: DefaultTimeout, CheckRedirect: redirect.Refuse}, true
	}
	if !c.set["lead"] {
		c.leadTime = DefaultLeadTime
	}
	if !c.set["jitter"] {
		c.jitter = DefaultJitter
	}
	if !c.set["minValidity"] {
		c.minValidity = DefaultMinValidity
	}
	if !c.set["backoff"] {
		c.base, c.cap, c.attempts = DefaultBackoffBase, DefaultBackoffCap, DefaultAttempts
	}
	if c.clock == nil {
		c.clock = systemClock{}
	}
	if c.rand == nil {
		c.rand = rand.Float64
	}
	return errors.Join(c.errs...)
}

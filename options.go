package realtimeauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"golang.org/x/time/rate"
)

// Option configures a Handler. Options only record what they are given;
// New applies the defaults afterwards and rejects a bad value or a bad
// combination with an error that names the option.
type Option func(*config)

// Authenticator identifies the user behind a request (WithAuthenticator).
// It returns the user's stable ID, or an error when the request is not
// authenticated. An empty subject with a nil error counts as unauthenticated.
type Authenticator func(r *http.Request) (subject string, err error)

// SessionConfigFunc chooses the realtime session configuration for a request
// (WithSessionConfig): a JSON object merged under "session" in the upstream
// request. Return an error wrapping ErrForbidden to refuse with 403, any
// other error to refuse with 400 invalid_request; nil keeps the minter's
// template.
type SessionConfigFunc func(r *http.Request, subject string) (json.RawMessage, error)

type config struct {
	rateLimit               int
	rateWindow              time.Duration
	rateLimitSet            bool
	store                   SessionStore
	origins                 []string
	originsSet              bool
	allowCredentials        bool
	corsHeaders             []string
	tokenTTL                time.Duration
	sessionTTL              time.Duration
	maxRefreshes            int
	minRefreshInterval      time.Duration
	refreshPolicySet        bool
	trustedProxies          []string
	basePath                string
	logger                  *slog.Logger
	upstreamTimeout         time.Duration
	maxBodyBytes            int64
	now                     func() time.Time
	abuseStrikes            int
	abuseWindow, abuseBlock time.Duration
	abuseGuard              AbuseGuard
	abuseSet                bool
	authenticator           Authenticator
	subjectLimit            int
	subjectWindow           time.Duration
	maxSessionsPerSubject   int
	upstreamRate            rate.Limit
	upstreamBurst           int
	upstreamRateSet         bool
	sessionConfig           SessionConfigFunc
	eventHook               EventHook
	measurementHook         MeasurementHook
	memoryMaxKeys           int
}

// Defaults.
const (
	DefaultRateLimit          = 10
	DefaultRateWindow         = time.Minute
	DefaultTokenTTL           = 60 * time.Second
	DefaultSessionTTL         = time.Hour
	DefaultMaxRefreshes       = 120
	DefaultMinRefreshInterval = 10 * time.Second
	DefaultBasePath           = "/api/voice-agent"
	DefaultUpstreamTimeout    = 10 * time.Second
	DefaultMaxBodyBytes       = 64 << 10
	DefaultAbuseStrikes       = 10
	DefaultAbuseWindow        = 10 * time.Minute
	DefaultAbuseBlock         = 15 * time.Minute
)

// WithRateLimit sets the limit on new sessions: n token requests per window
// per client, counted by the session store (see MemoryLimiter for the
// rule). Default 10 per minute. n must be in 1..1023, window a positive
// multiple of 4ns. Rejected requests do not use up the window.
func WithRateLimit(n int, window time.Duration) Option {
	return func(c *config) { c.rateLimit, c.rateWindow, c.rateLimitSet = n, window, true }
}

// WithSessionStore sets where sessions are kept. Default: a MemoryStore,
// which serves one process; use a shared store (redisstore) behind a load
// balancer.
func WithSessionStore(s SessionStore) Option {
	return func(c *config) { c.store = s }
}

// WithAllowedOrigins sets the browser origins allowed to call the token and
// refresh endpoints, as "scheme://host[:port]" (for example
// "https://app.example.com"), or "https://*.example.com" for every subdomain
// of example.com (not example.com itself, never evilexample.com). "*" allows
// every origin and must stand alone. "null" is never accepted. Default: none,
// so a browser request carrying an Origin header is refused with 403
// origin_not_allowed until origins are configured; requests without Origin
// (curl, servers, native apps) are not a CORS matter and proceed. Repeated
// calls add to the list.
func WithAllowedOrigins(origins ...string) Option {
	return func(c *config) {
		c.origins = append(c.origins, origins...)
		c.originsSet = true
	}
}

// WithAllowCredentials makes CORS answers carry
// Access-Control-Allow-Credentials: true, so that browsers send cookies with
// cross-origin token requests (for a cookie-based WithAuthenticator). Default
// false. Cannot be combined with the origin "*".
func WithAllowCredentials(allow bool) Option {
	return func(c *config) { c.allowCredentials = allow }
}

// WithCORSHeaders sets the request headers a cross-origin caller may send.
// Default: Content-Type and Authorization.
func WithCORSHeaders(headers ...string) Option {
	return func(c *config) { c.corsHeaders = append([]string(nil), headers...) }
}

// WithTokenTTL sets the life of each ephemeral token. Default 60s; valid
// range 10s..2h (OpenAI's own bounds), in whole seconds.
func WithTokenTTL(d time.Duration) Option {
	return func(c *config) { c.tokenTTL = d }
}

// WithSessionTTL sets how long a session can be refreshed after it was
// opened. Default 1h; valid range from the token TTL to 24h.
func WithSessionTTL(d time.Duration) Option {
	return func(c *config) { c.sessionTTL = d }
}

// WithRefreshPolicy bounds refreshes per session: at most maxRefreshes
// (default 120; valid 1..1,000,000), and not sooner than minInterval after
// the session's last token (default 10s; 0 disables; at most the session
// TTL).
func WithRefreshPolicy(maxRefreshes int, minInterval time.Duration) Option {
	return func(c *config) {
		c.maxRefreshes, c.minRefreshInterval, c.refreshPolicySet = maxRefreshes, minInterval, true
	}
}

// WithTrustedProxies lists the reverse proxies (CIDRs like "10.0.0.0/8" or
// single addresses) whose X-Forwarded-For is believed. Default: none, so the
// client IP is the TCP peer and X-Forwarded-For is ignored. With proxies set,
// a request from one of them is attributed to the right-most
// X-Forwarded-For address that is not itself a trusted proxy: entries a
// client forged to the left never count, nor does X-Real-IP.
func WithTrustedProxies(cidrs ...string) Option {
	return func(c *config) { c.trustedProxies = append(c.trustedProxies, cidrs...) }
}

// WithBasePath sets the path the endpoints live under. Default
// "/api/voice-agent". It must start with "/" and not end with one ("/"
// alone serves at the root).
func WithBasePath(p string) Option {
	return func(c *config) { c.basePath = p }
}

// WithLogger sets the logger for security events and upstream failures.
// Default: slog.Default(). The handler never logs a token or an API key.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.logger = l }
}

// WithUpstreamTimeout bounds each mint, retries included. Default 10s; valid
// range 100ms..2m.
func WithUpstreamTimeout(d time.Duration) Option {
	return func(c *config) { c.upstreamTimeout = d }
}

// WithMaxBodyBytes caps a request body. Default 64 KiB; valid range
// 64 B..10 MiB. Larger bodies get 413 payload_too_large.
func WithMaxBodyBytes(n int64) Option {
	return func(c *config) { c.maxBodyBytes = n }
}

// WithClock sets the handler's clock, for tests. Default time.Now. The
// stores decide with the times the handler reads from it.
func WithClock(now func() time.Time) Option {
	return func(c *config) { c.now = now }
}

// WithMemoryLimits caps the keys each default in-memory part tracks (see
// WithMemoryMaxKeys) and the live sessions of the store. Default 1,000,000;
// valid range 1 and up.
func WithMemoryLimits(maxKeys int) Option {
	return func(c *config) { c.memoryMaxKeys = maxKeys }
}

// WithAbuseGuard sets suspicious-activity blocking: a client IP that earns
// strikes strikes within window (a rate_limited rejection, an unknown or
// malformed session ID, a session used from another IP, a refused origin, a
// malformed or oversized body, a failed authentication) is blocked for
// blockFor: 403 blocked on every endpoint but health, reaching neither the
// limiter, the store nor the upstream. Defaults 10 strikes, 10 minutes, 15
// minutes; strikes 0 turns blocking off, otherwise 1..1,000,000 with window
// and blockFor positive.
func WithAbuseGuard(strikes int, window, blockFor time.Duration) Option {
	return func(c *config) {
		c.abuseStrikes, c.abuseWindow, c.abuseBlock, c.abuseSet = strikes, window, blockFor, true
	}
}

// WithAbuseStore replaces the in-memory abuse state with a shared one (for
// example redisstore's), which then carries its own thresholds;
// WithAbuseGuard's numbers are ignored.
func WithAbuseStore(g AbuseGuard) Option {
	return func(c *config) { c.abuseGuard = g }
}

// WithAuthenticator requires token and refresh requests to authenticate:
// without a subject they get 401 unauthorized and never reach the upstream.
// The subject is stored in the session, passed to the minter as
// MintRequest.Subject, and a refresh must come from the same subject.
// Default: no authentication.
func WithAuthenticator(a Authenticator) Option {
	return func(c *config) { c.authenticator = a }
}

// WithSubjectRateLimit adds a second limit keyed by subject, beside the
// per-IP one: n token requests per window per user. Default off; n in
// 1..1023, window positive. Needs WithAuthenticator.
func WithSubjectRateLimit(n int, window time.Duration) Option {
	return func(c *config) { c.subjectLimit, c.subjectWindow = n, window }
}

// WithMaxSessionsPerSubject caps a user's live sessions at n (429
// too_many_sessions beyond it), checked and counted atomically. Default 0,
// no cap; valid 0..1,000,000. Needs WithAuthenticator.
func WithMaxSessionsPerSubject(n int) Option {
	return func(c *config) { c.maxSessionsPerSubject = n }
}

// WithUpstreamRate sets a per-process budget on mint calls, a token bucket
// of r mints per second with the given burst, so that a flood from many
// clients cannot exhaust the organisation's OpenAI limits. Exhausted, a
// request gets 503 upstream_busy with Retry-After and the upstream is not
// called. Default: off. r must be positive (rate.Inf is allowed) and burst
// at least 1.
func WithUpstreamRate(r rate.Limit, burst int) Option {
	return func(c *config) { c.upstreamRate, c.upstreamBurst, c.upstreamRateSet = r, burst, true }
}

// WithSessionConfig sets a hook choosing the realtime session configuration
// per request (per user, say). The client's request body cannot change the
// configuration unless this hook reads it (r.Body holds it again) and
// chooses to. Default: none, the minter's template applies.
func WithSessionConfig(f SessionConfigFunc) Option {
	return func(c *config) { c.sessionConfig = f }
}

// WithEventHook receives every security event, beside the log. Default none.
func WithEventHook(f EventHook) Option {
	return func(c *config) { c.eventHook = f }
}

// resolve fills the defaults and checks everything; its errors name the
// option at fault.
func (c *config) resolve() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf("realtimeauth: "+format, a...)) }

	if c.now == nil {
		c.now = time.Now
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	if c.memoryMaxKeys == 0 {
		c.memoryMaxKeys = 1_000_000
	} else if c.memoryMaxKeys < 0 {
		bad("WithMemoryLimits: maxKeys %d must be at least 1", c.memoryMaxKeys)
	}
	mem := []MemoryOption{WithMemoryMaxKeys(c.memoryMaxKeys)}

	if !c.rateLimitSet {
		c.rateLimit, c.rateWindow = DefaultRateLimit, DefaultRateWindow
	}
	if err := checkLimit("WithRateLimit", c.rateLimit, c.rateWindow); err != nil {
		errs = append(errs, err)
	}
	if c.store == nil {
		c.store = NewMemoryStore(mem...)
	}

	if c.tokenTTL == 0 {
		c.tokenTTL = DefaultTokenTTL
	}
	if c.tokenTTL < 10*time.Second || c.tokenTTL > 2*time.Hour || c.tokenTTL%time.Second != 0 {
		bad("WithTokenTTL: %v is outside 10s..2h or not whole seconds", c.tokenTTL)
	}
	if c.sessionTTL == 0 {
		c.sessionTTL = max(DefaultSessionTTL, c.tokenTTL)
	}
	if c.sessionTTL < c.tokenTTL || c.sessionTTL > 24*time.Hour {
		bad("WithSessionTTL: %v is outside the token TTL (%v)..24h", c.sessionTTL, c.tokenTTL)
	}
	if !c.refreshPolicySet {
		c.maxRefreshes, c.minRefreshInterval = DefaultMaxRefreshes, DefaultMinRefreshInterval
	}
	if c.maxRefreshes < 1 || c.maxRefreshes > 1_000_000 {
		bad("WithRefreshPolicy: maxRefreshes %d is outside 1..1000000", c.maxRefreshes)
	}
	if c.minRefreshInterval < 0 || c.minRefreshInterval > c.sessionTTL {
		bad("WithRefreshPolicy: minInterval %v is outside 0..session TTL", c.minRefreshInterval)
	}

	if c.basePath == "" {
		c.basePath = DefaultBasePath
	}
	if c.basePath == "/" {
		c.basePath = ""
	} else if !strings.HasPrefix(c.basePath, "/") || strings.HasSuffix(c.basePath, "/") ||
		strings.ContainsAny(c.basePath, "?#% \t") {
		bad("WithBasePath: %q must start with / and not end with one", c.basePath)
	}
	if c.upstreamTimeout == 0 {
		c.upstreamTimeout = DefaultUpstreamTimeout
	}
	if c.upstreamTimeout < 100*time.Millisecond || c.upstreamTimeout > 2*time.Minute {
		bad("WithUpstreamTimeout: %v is outside 100ms..2m", c.upstreamTimeout)
	}
	if c.maxBodyBytes == 0 {
		c.maxBodyBytes = DefaultMaxBodyBytes
	}
	if c.maxBodyBytes < 64 || c.maxBodyBytes > 10<<20 {
		bad("WithMaxBodyBytes: %d is outside 64..10485760", c.maxBodyBytes)
	}
	if c.corsHeaders == nil {
		c.corsHeaders = []string{"Content-Type", "Authorization"}
	}
	for _, h := range c.corsHeaders {
		if !validHeaderName(h) {
			bad("WithCORSHeaders: %q is not a header name", h)
		}
	}

	if c.abuseGuard == nil {
		if !c.abuseSet {
			c.abuseStrikes, c.abuseWindow, c.abuseBlock = DefaultAbuseStrikes, DefaultAbuseWindow, DefaultAbuseBlock
		}
		if c.abuseStrikes != 0 {
			if err := checkAbuse(c.abuseStrikes, c.abuseWindow, c.abuseBlock); err != nil {
				errs = append(errs, err)
			} else {
				c.abuseGuard = NewMemoryAbuseGuard(c.abuseStrikes, c.abuseWindow, c.abuseBlock, mem...)
			}
		}
	}

	if c.authenticator == nil {
		if c.subjectLimit != 0 {
			bad("WithSubjectRateLimit needs WithAuthenticator: without it there is no subject")
		}
		if c.maxSessionsPerSubject != 0 {
			bad("WithMaxSessionsPerSubject needs WithAuthenticator: without it there is no subject")
		}
	}
	if c.subjectLimit != 0 {
		if err := checkLimit("WithSubjectRateLimit", c.subjectLimit, c.subjectWindow); err != nil {
			errs = append(errs, err)
		}
	}
	if c.maxSessionsPerSubject < 0 || c.maxSessionsPerSubject > 1_000_000 {
		bad("WithMaxSessionsPerSubject: %d is outside 0..1000000", c.maxSessionsPerSubject)
	}
	if c.upstreamRateSet && (c.upstreamRate <= 0 || c.upstreamBurst < 1) {
		bad("WithUpstreamRate: rate %v must be positive and burst %d at least 1", c.upstreamRate, c.upstreamBurst)
	}
	return errors.Join(errs...)
}

func validHeaderName(h string) bool {
	if h == "" {
		return false
	}
	for i := 0; i < len(h); i++ {
		b := h[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0) {
			return false
		}
	}
	return true
}

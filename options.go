package realtimeauth

import (
	"encoding/json"
	"errors"
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
	store                       SessionStore
	abuseGuard                  AbuseGuard
	abuseSet                    bool
	rateLimit, mintLimit        int
	rateWindow, mintWindow      time.Duration
	rateSet, mintSet            bool
	prefixShare                 int
	prefixRateLimit             int // rateLimit × prefixShare, at most maxLimit
	prefixMintLimit             int
	subjectLimit                int
	subjectWindow               time.Duration
	maxPerClient, maxSessions   int
	maxPerSubject               int
	origins                     []string
	allowCredentials            bool
	corsHeaders                 []string
	tokenTTL, sessionTTL        time.Duration
	maxRefreshes                int
	minRefreshInterval          time.Duration
	refreshPolicySet            bool
	trustedProxies              []string
	basePath                    string
	logger                      *slog.Logger
	quietInfo                   bool
	upstreamTimeout             time.Duration
	maxBodyBytes                int64
	now                         func() time.Time
	authenticator               Authenticator
	upstreamRate                rate.Limit
	upstreamBurst               int
	upstreamRateSet             bool
	sessionConfig               SessionConfigFunc
	eventHook                   EventHook
	maxPerClientSet, maxSessSet bool
	prefixShareSet              bool
	calls                       callConfig // calls.go
}

// DefaultBasePath is where the endpoints live unless WithBasePath says
// otherwise.
const DefaultBasePath = "/api/voice-agent"

// The other defaults, stated in each option's doc.
const (
	defaultRateLimit          = 10
	defaultMintLimit          = 30
	defaultPrefixShare        = 16
	defaultMaxPerClient       = 10
	defaultMaxSessions        = 1_000_000
	defaultTokenTTL           = 60 * time.Second
	defaultSessionTTL         = time.Hour
	defaultMaxRefreshes       = 120
	defaultMinRefreshInterval = 10 * time.Second
	defaultUpstreamTimeout    = 10 * time.Second
	defaultMaxBodyBytes       = 64 << 10
)

// WithSessionStore sets where sessions, and the allowances they are charged
// against, are kept. Default: NewMemoryStore(), which serves one process; use
// a shared store (redisstore) behind a load balancer.
func WithSessionStore(s SessionStore) Option {
	return func(c *config) { c.store = s }
}

// WithAbuseGuard sets what keeps strikes and blocks: a client that earns
// strikes (a rate_limited refusal, an unknown or foreign session, a
// malformed or oversized body, a failed authentication) is blocked, and
// gets 403 blocked on every endpoint but health, reaching neither the
// store nor the upstream. nil turns blocking off. Default:
// NewMemoryAbuseGuard(10, 10*time.Minute, 15*time.Minute), 10 strikes
// within 10 minutes block for 15.
func WithAbuseGuard(g AbuseGuard) Option {
	return func(c *config) { c.abuseGuard, c.abuseSet = g, true }
}

// WithRateLimit sets how many new sessions (token requests) a client may
// open: n per window. A client is an IPv4 address or an IPv6 /64. Default
// 10 per minute; n in 1..1023, window a positive multiple of 4ns. Any interval of one
// window's length admits at most max(n+1, 5n/4) (see NewMemoryLimiter); a
// refused request does not count.
func WithRateLimit(n int, window time.Duration) Option {
	return func(c *config) { c.rateLimit, c.rateWindow, c.rateSet = n, window, true }
}

// WithMintLimit sets how many tokens a client may be minted, by token and
// refresh requests together: n per window. Default 30 per minute; n in
// 1..1023, window a positive multiple of 4ns. With WithRateLimit and WithMaxSessionsPerClient
// it bounds what one client costs (docs/limits.md).
func WithMintLimit(n int, window time.Duration) Option {
	return func(c *config) { c.mintLimit, c.mintWindow, c.mintSet = n, window, true }
}

// WithPrefixShare sets how many clients one IPv6 /48 counts as at most: the
// /48 has its own WithRateLimit and WithMintLimit allowances, f times each
// client's (at most 1023), and its /64s together hold at most f times
// WithMaxCallsPerClient live calls, so that a site's 65,536 /64s do not
// each get a full share. Default 16; valid 1..65536.
func WithPrefixShare(f int) Option {
	return func(c *config) { c.prefixShare, c.prefixShareSet = f, true }
}

// WithMaxSessionsPerClient caps a client's live sessions. A new session at
// the cap closes the client's least recently used one (event
// session_evicted; its refresh then answers 404 session_not_found), so that
// a user who reloads a page many times is never locked out. Default 10;
// valid 1..1,000,000.
func WithMaxSessionsPerClient(n int) Option {
	return func(c *config) { c.maxPerClient, c.maxPerClientSet = n, true }
}

// WithMaxSessions caps the live sessions of the store. When it is full, a
// new session of a client holding fewer sessions than the heaviest client
// closes the heaviest client's least recently used session; a client among
// the heaviest gets 429 too_many_sessions. Default 1,000,000; valid
// 1..100,000,000.
func WithMaxSessions(n int) Option {
	return func(c *config) { c.maxSessions, c.maxSessSet = n, true }
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

// WithLogger sets the logger for security events and backend failures; it
// then also gets the info events (token_issued, token_refreshed). Default:
// slog.Default(), without the info events, which would cost a line and a
// write per token. Either way, lines of one kind about one client are
// written at most 10 times a minute, the rest summarised in one
// "suppressed" line; the event hook sees every event. The handler never
// logs a token or an API key.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.logger = l }
}

// WithUpstreamTimeout bounds each mint, retries included, unless the Minter
// mints in-process (see Minter). Default 10s; valid range 100ms..2m.
func WithUpstreamTimeout(d time.Duration) Option {
	return func(c *config) { c.upstreamTimeout = d }
}

// WithMaxBodyBytes caps a request body. Default 64 KiB; valid range
// 64 B..10 MiB. Larger bodies get 413 payload_too_large.
func WithMaxBodyBytes(n int64) Option {
	return func(c *config) { c.maxBodyBytes = n }
}

// WithClock sets the handler's clock, for tests. Default time.Now. The
// handler passes the time it reads to the store and the abuse guard.
func WithClock(now func() time.Time) Option {
	return func(c *config) { c.now = now }
}

// WithAuthenticator requires token and refresh requests to authenticate:
// without a subject they get 401 unauthorized and never reach the upstream.
// The subject is stored in the session, passed to the minter as
// MintRequest.Subject, and a refresh must come from the same subject.
// Default: no authentication.
func WithAuthenticator(a Authenticator) Option {
	return func(c *config) { c.authenticator = a }
}

// WithSubjectRateLimit limits the tokens minted for one subject, by token
// and refresh requests together, from any client: n per window. Default
// off; n in 1..1023, window a positive multiple of 4ns. Needs
// WithAuthenticator.
func WithSubjectRateLimit(n int, window time.Duration) Option {
	return func(c *config) { c.subjectLimit, c.subjectWindow = n, window }
}

// WithMaxSessionsPerSubject caps a user's live sessions at n (429
// too_many_sessions beyond it), checked and counted atomically. Default 0,
// no cap; valid 0..1,000,000. Needs WithAuthenticator.
func WithMaxSessionsPerSubject(n int) Option {
	return func(c *config) { c.maxPerSubject = n }
}

// WithUpstreamRate sets a per-process budget on mint calls, a token bucket
// of r mints per second with the given burst, so that a flood from many
// clients cannot exhaust the organisation's OpenAI limits. It is taken
// only once every other check has passed. Exhausted, a request gets 503
// upstream_busy with Retry-After and the upstream is not called. Default:
// off. r must be positive (rate.Inf is allowed) and burst at least 1.
func WithUpstreamRate(r rate.Limit, burst int) Option {
	return func(c *config) { c.upstreamRate, c.upstreamBurst, c.upstreamRateSet = r, burst, true }
}

// WithSessionConfig sets a hook choosing the realtime session configuration
// per request (per user, say). The client's request body cannot change the
// configuration unless this hook reads it (r.Body holds it again) and
// chooses to. For a relayed call (POST {base}/calls) r.Body is the SDP
// offer, not JSON: choose from the user, the URL or a header there. Default:
// none, the minter's template applies.
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
	bad := func(format string, a ...any) { errs = append(errs, errorf(format, a...)) }
	if c.now == nil {
		c.now = time.Now
	}
	if c.logger == nil {
		c.logger, c.quietInfo = slog.Default(), true
	}
	if c.store == nil {
		c.store = NewMemoryStore()
	}
	if !c.abuseSet {
		c.abuseGuard = NewMemoryAbuseGuard(10, 10*time.Minute, 15*time.Minute)
	}
	c.resolveLimits(bad)
	c.resolveSessions(bad)
	c.resolveRequests(bad)
	c.resolveCalls(bad)
	if c.authenticator == nil {
		if c.subjectLimit != 0 {
			bad("WithSubjectRateLimit needs WithAuthenticator: without it there is no subject")
		}
		if c.maxPerSubject != 0 {
			bad("WithMaxSessionsPerSubject needs WithAuthenticator: without it there is no subject")
		}
	}
	if c.upstreamRateSet && (c.upstreamRate <= 0 || c.upstreamBurst < 1) {
		bad("WithUpstreamRate: rate %v must be positive and burst %d at least 1", c.upstreamRate, c.upstreamBurst)
	}
	return errors.Join(errs...)
}

// resolveLimits fills and checks the allowances and the caps.
func (c *config) resolveLimits(bad func(string, ...any)) {
	if !c.rateSet {
		c.rateLimit, c.rateWindow = defaultRateLimit, time.Minute
	}
	if !c.mintSet {
		c.mintLimit, c.mintWindow = defaultMintLimit, time.Minute
	}
	if !c.prefixShareSet {
		c.prefixShare = defaultPrefixShare
	}
	for _, l := range []struct {
		name string
		n    int
		w    time.Duration
	}{{"WithRateLimit", c.rateLimit, c.rateWindow}, {"WithMintLimit", c.mintLimit, c.mintWindow}} {
		if err := checkLimit(l.name, l.n, l.w); err != nil {
			bad("%v", strings.TrimPrefix(err.Error(), "realtimeauth: "))
		}
	}
	if c.subjectLimit != 0 || c.subjectWindow != 0 {
		if err := checkLimit("WithSubjectRateLimit", c.subjectLimit, c.subjectWindow); err != nil {
			bad("%v", strings.TrimPrefix(err.Error(), "realtimeauth: "))
		}
	}
	if c.prefixShare < 1 || c.prefixShare > 65536 {
		bad("WithPrefixShare: %d is outside 1..65536", c.prefixShare)
	}
	c.prefixRateLimit = min(c.rateLimit*c.prefixShare, maxLimit)
	c.prefixMintLimit = min(c.mintLimit*c.prefixShare, maxLimit)
	if !c.maxPerClientSet {
		c.maxPerClient = defaultMaxPerClient
	}
	if c.maxPerClient < 1 || c.maxPerClient > 1_000_000 {
		bad("WithMaxSessionsPerClient: %d is outside 1..1000000", c.maxPerClient)
	}
	if !c.maxSessSet {
		c.maxSessions = defaultMaxSessions
	}
	if c.maxSessions < 1 || c.maxSessions > 100_000_000 {
		bad("WithMaxSessions: %d is outside 1..100000000", c.maxSessions)
	}
	if c.maxPerSubject < 0 || c.maxPerSubject > 1_000_000 {
		bad("WithMaxSessionsPerSubject: %d is outside 0..1000000", c.maxPerSubject)
	}
}

// resolveSessions fills and checks the token and session lives.
func (c *config) resolveSessions(bad func(string, ...any)) {
	if c.tokenTTL == 0 {
		c.tokenTTL = defaultTokenTTL
	}
	if c.tokenTTL < 10*time.Second || c.tokenTTL > 2*time.Hour || c.tokenTTL%time.Second != 0 {
		bad("WithTokenTTL: %v is outside 10s..2h or not whole seconds", c.tokenTTL)
	}
	if c.sessionTTL == 0 {
		c.sessionTTL = max(defaultSessionTTL, c.tokenTTL)
	}
	if c.sessionTTL < c.tokenTTL || c.sessionTTL > 24*time.Hour {
		bad("WithSessionTTL: %v is outside the token TTL (%v)..24h", c.sessionTTL, c.tokenTTL)
	}
	if !c.refreshPolicySet {
		c.maxRefreshes, c.minRefreshInterval = defaultMaxRefreshes, defaultMinRefreshInterval
	}
	if c.maxRefreshes < 1 || c.maxRefreshes > 1_000_000 {
		bad("WithRefreshPolicy: maxRefreshes %d is outside 1..1000000", c.maxRefreshes)
	}
	if c.minRefreshInterval < 0 || c.minRefreshInterval > c.sessionTTL {
		bad("WithRefreshPolicy: minInterval %v is outside 0..session TTL", c.minRefreshInterval)
	}
}

// resolveRequests fills and checks what shapes a request and its answer.
func (c *config) resolveRequests(bad func(string, ...any)) {
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
		c.upstreamTimeout = defaultUpstreamTimeout
	}
	if c.upstreamTimeout < 100*time.Millisecond || c.upstreamTimeout > 2*time.Minute {
		bad("WithUpstreamTimeout: %v is outside 100ms..2m", c.upstreamTimeout)
	}
	if c.maxBodyBytes == 0 {
		c.maxBodyBytes = defaultMaxBodyBytes
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

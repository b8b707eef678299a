package realtimeauth

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// Option configures a Handler. Options only record what they are given;
// New applies the defaults afterwards and rejects a bad value or a bad
// combination with an error that names the option.
type Option func(*config)

type config struct {
	store            SessionStore
	abuseGuard       AbuseGuard
	abuseSet         bool
	lim              Limits // WithLimits, resolved (limits.go)
	prefixRateLimit  int    // Sessions.N × PrefixShare, at most maxLimit
	prefixMintLimit  int
	origins          []string
	allowCredentials bool
	corsHeaders      []string
	trustedProxies   []string
	basePath         string
	logger           *slog.Logger
	quietInfo        bool
	now              func() time.Time
	authenticator    func(*http.Request) (subject string, err error)
	sessionConfig    func(r *http.Request, subject string) (json.RawMessage, error)
	eventHook        func(Event)
	calls            callConfig // calls.go
}

// defaultBasePath is where the endpoints live unless WithBasePath says
// otherwise.
const defaultBasePath = "/api/voice-agent"

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

// WithCORSHeaders sets the request headers a cross-origin caller may send,
// replacing the default list: Content-Type and Authorization. Called with
// none, it keeps the default (a browser's JSON POST needs Content-Type).
func WithCORSHeaders(headers ...string) Option {
	return func(c *config) { c.corsHeaders = append([]string(nil), headers...) }
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

// WithClock sets the handler's clock, for tests. Default time.Now. The
// handler passes the time it reads to the store and the abuse guard.
func WithClock(now func() time.Time) Option {
	return func(c *config) { c.now = now }
}

// WithAuthenticator requires token and refresh requests to authenticate:
// without a subject they get 401 unauthorized and never reach the upstream.
// auth identifies the user behind a request: it returns the user's stable
// ID, or an error when the request is not authenticated; an empty subject
// with a nil error counts as unauthenticated. The subject is stored in the
// session, passed to the minter as MintRequest.Subject, and a refresh must
// come from the same subject. Default: no authentication.
func WithAuthenticator(auth func(r *http.Request) (subject string, err error)) Option {
	return func(c *config) { c.authenticator = auth }
}

// WithSessionConfig sets a hook choosing the realtime session configuration
// per request (per user, say): a JSON object merged under "session" in the
// upstream request. It returns an error wrapping ErrForbidden to refuse
// with 403, any other error to refuse with 400 invalid_request; nil keeps
// the minter's template. The client's request body cannot change the
// configuration unless the hook reads it (r.Body holds it again) and
// chooses to. For a relayed call (POST {base}/calls) r.Body is the SDP
// offer, not JSON: choose from the user, the URL or a header there.
// Default: none, the minter's template applies.
func WithSessionConfig(f func(r *http.Request, subject string) (json.RawMessage, error)) Option {
	return func(c *config) { c.sessionConfig = f }
}

// WithEventHook receives every security event (see Event), beside the
// log, including those the log leaves out. It runs on the request's
// goroutine: keep it fast, hand slow work to a goroutine of your own.
// Default none.
func WithEventHook(f func(Event)) Option {
	return func(c *config) { c.eventHook = f }
}

// resolve fills the defaults and checks everything; its errors name the
// option, or the field of Limits, at fault.
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
		c.abuseGuard, _ = newMemoryAbuseGuard(10, 10*time.Minute, 15*time.Minute, memoryMaxKeys) // valid constants
	}
	c.resolveLimits(bad)
	c.resolveRequests(bad)
	c.resolveCalls(bad)
	return errors.Join(errs...)
}

// resolveRequests fills and checks what shapes a request and its answer.
func (c *config) resolveRequests(bad func(string, ...any)) {
	if c.basePath == "" {
		c.basePath = defaultBasePath
	}
	if c.basePath == "/" {
		c.basePath = ""
	} else if !strings.HasPrefix(c.basePath, "/") || strings.HasSuffix(c.basePath, "/") ||
		strings.ContainsAny(c.basePath, "?#% \t") {
		bad("WithBasePath: %q must start with / and not end with one", c.basePath)
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

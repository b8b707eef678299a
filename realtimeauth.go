// Package realtimeauth is the server side of the OpenAI Realtime API's
// ephemeral keys: an http.Handler that mints short-lived tokens (ek_…) for
// browsers and apps with the server's long-lived API key, which never
// leaves the server.
//
// It serves, under a base path (default /api/voice-agent):
//
//	POST   {base}/token           mint a token and open a session
//	POST   {base}/refresh-token   a new token for an existing session
//	GET    {base}/health          status and metrics (503 when unhealthy or closed)
//	GET    {base}/compatibility   what the original service's client asks first
//	POST   {base}/calls           the relay: a WebRTC call placed with the server's key
//	DELETE {base}/calls/{id}      hang a relayed call up
//	GET    {base}/client.js       the browser client, an ES module (and client.d.ts)
//
// with a CORS allow-list, per-client allowances that count every mint (a
// forged X-Forwarded-For cannot dodge them, an IPv6 site's /48 counts as a
// few clients), sessions bound to their client with refresh limits and
// capped per client and in total, an upstream budget taken only after every
// free check, suspicious-activity blocking, OWASP headers and
// Cache-Control: no-store on every JSON answer.
//
// Mount it in the server you have:
//
//	minter, err := realtimeauth.NewOpenAIMinter(os.Getenv("OPENAI_API_KEY"), realtimeauth.OpenAIConfig{})
//	if err != nil {
//		log.Fatal(err)
//	}
//	h, err := realtimeauth.New(minter,
//		realtimeauth.WithAllowedOrigins("https://app.example.com"),
//		realtimeauth.WithLimits(realtimeauth.Limits{Sessions: realtimeauth.Rate{N: 10, Per: time.Minute}}),
//	)
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer h.Close()
//	mux.Handle("/api/voice-agent/", h)
//
// The parts are swappable behind small interfaces: a Minter (OpenAI, Azure
// OpenAI, NewDevMinter, a fake in tests), a SessionStore (which keeps the
// sessions and the allowances they are charged against), an AbuseGuard, and
// for the relay a calls.Registry (package calls). The in-memory defaults
// serve one process; the redisstore module shares them between instances.
// A Limiter (NewMemoryLimiter, redisstore.NewLimiter) counts limits of your
// own with the same rule as the allowances. The SessionStore, Limiter,
// AbuseGuard and calls.Registry contracts each have a conformance suite in
// package realtimeauthtest, which the memory and Redis implementations run.
//
// Every option's doc, and every field's of Limits and OpenAIConfig, states
// its default and valid range. The HTTP contract,
// the security model, the limits and operations are described in the
// repository's docs directory (docs/http.md, docs/security.md,
// docs/limits.md, docs/operations.md).
package realtimeauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/rs/cors"
)

// Minter issues ephemeral tokens. Implementations must be safe for
// concurrent use and honour ctx's deadline. An error that is (or wraps) an
// *UpstreamError is mapped by its status; a deadline exceeded is a 504;
// anything else is a 502.
//
// The handler bounds each Mint with Limits.UpstreamTimeout, unless the Minter
// has a method Local() bool that reports true: one that mints in-process
// (NewDevMinter, a test fake) needs no deadline, and is given the request's
// context as it is.
type Minter interface {
	Mint(ctx context.Context, req MintRequest) (Token, error)
}

// MintRequest is what the handler asks a Minter for.
type MintRequest struct {
	// SessionID is the handler's session the token belongs to.
	SessionID string
	// ClientIP is the full address of the client.
	ClientIP string
	// Subject is the authenticated user, or "" (WithAuthenticator).
	Subject string
	// TTL is the token life the handler wants (Limits.TokenTTL).
	TTL time.Duration
	// Session is the realtime session configuration chosen by
	// WithSessionConfig for this request, a JSON object, or nil.
	Session json.RawMessage
}

// Token is an ephemeral key and what the client needs to know about it.
type Token struct {
	Value     string
	ExpiresAt time.Time
	// Mode is "realtime" (also when empty) for a key that works against
	// OpenAI, "demo" for a fake one (NewDevMinter); the answer's "mode" field,
	// which the original service's clients read.
	Mode string
	// Model is the model the key was minted for, or ""; the answer's
	// "model" field, so that a page can pass the same one to the Agents SDK.
	Model string
}

const (
	modeRealtime = "realtime"
	modeDemo     = "demo"
)

// Handler serves the endpoints the package doc lists: token, refresh,
// health, compatibility, the call relay and the client script. It is safe
// for concurrent use and immutable after New.
type Handler struct {
	cfg      config
	minter   Minter
	store    SessionStore
	guard    AbuseGuard
	origins  *originMatcher
	cors     *cors.Cors // the token and refresh endpoints
	readCORS *cors.Cors // health, compatibility and the scripts: GET
	ips      ipResolver
	upstream *upstreamBudget
	base     string
	now      func() time.Time
	log      *slog.Logger
	// quietInfo leaves info lines out of the log (no WithLogger).
	quietInfo bool
	quota     logQuota
	start     time.Time
	m         metrics
	snap      countSnapshot
	closed    atomic.Bool
	calls     *callControl // calls_control.go
}

// New returns a Handler that mints tokens with m. It applies the options,
// fills in the defaults and validates the result; the error names every
// option at fault.
func New(m Minter, opts ...Option) (*Handler, error) {
	if m == nil {
		return nil, errorf("New: the Minter is nil")
	}
	var c config
	for _, o := range opts {
		if o == nil {
			return nil, errorf("New: nil Option")
		}
		o(&c)
	}
	// Every check runs, so that one error names every option at fault.
	errs := []error{c.resolve()}
	origins, err := parseOrigins(c.origins)
	errs = append(errs, err)
	if err == nil && origins.all && c.allowCredentials {
		errs = append(errs, errorf(`WithAllowCredentials cannot be combined with the origin "*"`))
	}
	trusted, err := parseTrustedProxies(c.trustedProxies)
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	h := &Handler{
		cfg:       c,
		minter:    m,
		store:     c.store,
		guard:     c.abuseGuard,
		origins:   origins,
		ips:       ipResolver{trusted: trusted},
		base:      c.basePath,
		now:       c.now,
		log:       c.logger,
		quietInfo: c.quietInfo,
		quota:     logQuota{counts: make(map[logKey]logCount), kinds: make(map[string]kindCount)},
	}
	h.start = h.now()
	corsFor := func(methods ...string) *cors.Cors {
		return cors.New(cors.Options{
			AllowOriginFunc:  origins.allowed,
			AllowedMethods:   methods,
			AllowedHeaders:   c.corsHeaders,
			AllowCredentials: c.allowCredentials,
			MaxAge:           600,
		})
	}
	h.cors, h.readCORS = corsFor(http.MethodPost), corsFor(http.MethodGet, http.MethodHead)
	if c.upstreamBudgetSet() {
		h.upstream = newUpstreamBudget(c.lim.UpstreamRate, c.lim.UpstreamBurst)
	}
	h.calls = newCallControl(h, origins)
	return h, nil
}

// Close marks the handler closed: token and refresh requests are answered
// 503 unavailable from then on, while health keeps answering, with 503 and
// "draining": true, so that a load balancer stops sending traffic. It stops
// the background work of the calls (the deadline sweep, the watches) and
// waits for a sweep in flight; it hangs up no call, so that another
// instance sharing the calls.Registry takes their deadlines over. Close is
// idempotent and safe while requests are in flight; it does not close a
// SessionStore or AbuseGuard passed in by option, which belong to the
// caller.
func (h *Handler) Close() error {
	h.closed.Store(true)
	h.calls.close()
	return nil
}

// RevokeSession revokes one session: its refreshes get 401 session_revoked
// and it no longer counts as active. Revoking an unknown or expired session
// returns ErrSessionNotFound; revoking twice is not an error.
//
// It also hangs up the session's live relayed calls; an error from that
// is joined to the store's.
func (h *Handler) RevokeSession(ctx context.Context, id string) error {
	_, err := h.store.Revoke(ctx, id, h.now())
	if errors.Is(err, ErrSessionRevoked) {
		err = nil
	}
	return errors.Join(err, h.calls.revokeSession(ctx, id))
}

// RevokeSubject revokes every live session of subject and returns how many
// it revoked. It does not stop the subject from opening new sessions: that
// is the authenticator's decision.
func (h *Handler) RevokeSubject(ctx context.Context, subject string) (int, error) {
	if subject == "" {
		return 0, errorf("RevokeSubject: empty subject")
	}
	revoked, err := h.store.RevokeSubject(ctx, subject, h.now())
	return len(revoked), errors.Join(err, h.calls.revokeSubject(ctx, subject))
}

func errorf(format string, a ...any) error {
	return fmt.Errorf("realtimeauth: "+format, a...)
}

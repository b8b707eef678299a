// Package realtimeauth is the server side of the OpenAI Realtime API's
// ephemeral keys: an http.Handler that mints short-lived tokens (ek_…) for
// browsers and apps with the server's long-lived API key, which never
// leaves the server.
//
// It serves, under a base path (default /api/voice-agent):
//
//	POST {base}/token          mint a token and open a session
//	POST {base}/refresh-token  a new token for an existing session
//	GET  {base}/health         status and metrics (503 when unhealthy or closed)
//	GET  {base}/compatibility  what the original service's client asks first
//	GET  {base}/client.js      the browser client, an ES module (and client.d.ts)
//
// with a CORS allow-list, per-client sliding-window rate limits that a
// forged X-Forwarded-For cannot dodge, sessions bound to their client with
// refresh limits, suspicious-activity blocking, OWASP headers and
// Cache-Control: no-store on every JSON answer.
//
// Mount it in the server you have:
//
//	minter, err := realtimeauth.NewOpenAIMinter(os.Getenv("OPENAI_API_KEY"))
//	if err != nil {
//		log.Fatal(err)
//	}
//	h, err := realtimeauth.New(minter,
//		realtimeauth.WithAllowedOrigins("https://app.example.com"),
//		realtimeauth.WithRateLimit(10, time.Minute),
//	)
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer h.Close()
//	mux.Handle("/api/voice-agent/", h)
//
// The parts are swappable behind small interfaces: a Minter (OpenAI, Azure
// OpenAI, DevMinter, a fake in tests), a Limiter, a SessionStore and an
// AbuseGuard. The in-memory defaults serve one process; the redisstore
// module shares them between instances.
package realtimeauth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/rs/cors"
	"golang.org/x/time/rate"
)

// Minter issues ephemeral tokens. Implementations must be safe for
// concurrent use and honour ctx's deadline. An error that wraps
// ErrUpstream (see UpstreamError) is mapped by its status; a deadline
// exceeded is a 504; anything else is a 502.
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
	// TTL is the token life the handler wants (WithTokenTTL).
	TTL time.Duration
	// Session is the realtime session configuration chosen by
	// WithSessionConfig for this request, a JSON object, or nil.
	Session json.RawMessage
}

// Token is an ephemeral key and its expiry.
type Token struct {
	Value     string
	ExpiresAt time.Time
}

// Handler serves the token, refresh and health endpoints. It is safe for
// concurrent use and immutable after New.
type Handler struct {
	cfg      config
	minter   Minter
	store    SessionStore
	guard    AbuseGuard
	origins  *originMatcher
	cors     *cors.Cors
	readCORS *cors.Cors // health and compatibility: GET
	ips      ipResolver
	upstream *rate.Limiter
	base     string
	now      func() time.Time
	log      *slog.Logger
	start    time.Time
	m        metrics
	snap     countSnapshot
	closed   atomic.Bool
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
		cfg:     c,
		minter:  m,
		store:   c.store,
		guard:   c.abuseGuard,
		origins: origins,
		ips:     ipResolver{trusted: trusted},
		base:    c.basePath,
		now:     c.now,
		log:     c.logger,
	}
	h.start = h.now()
	h.cors = cors.New(cors.Options{
		AllowOriginFunc:  origins.allowed,
		AllowedMethods:   []string{"POST"},
		AllowedHeaders:   c.corsHeaders,
		AllowCredentials: c.allowCredentials,
		MaxAge:           600,
	})
	h.readCORS = cors.New(cors.Options{
		AllowOriginFunc:  origins.allowed,
		AllowedMethods:   []string{"GET", "HEAD"},
		AllowedHeaders:   c.corsHeaders,
		AllowCredentials: c.allowCredentials,
		MaxAge:           600,
	})
	h.m.hook = c.measurementHook
	if c.upstreamRateSet {
		h.upstream = rate.NewLimiter(c.upstreamRate, c.upstreamBurst)
	}
	return h, nil
}

// Close marks the handler closed: token and refresh requests are answered
// 503 unavailable from then on, while health keeps answering, with 503 and
// "draining": true, so that a load balancer stops sending traffic. The handler
// runs no background goroutine, so there is nothing else to stop. Close is
// idempotent and safe while requests are in flight; it does not close a
// Limiter, SessionStore or AbuseGuard passed in by option, which belong to
// the caller.
func (h *Handler) Close() error {
	h.closed.Store(true)
	return nil
}

// RevokeSession revokes one session: its refreshes get 401 session_revoked
// and it no longer counts as active. Revoking an unknown or expired session
// returns ErrSessionNotFound; revoking twice is not an error.
func (h *Handler) RevokeSession(ctx context.Context, id string) error {
	_, err := h.store.Revoke(ctx, id, h.now())
	return err
}

// RevokeSubject revokes every live session of subject and returns how many
// it revoked. It does not stop the subject from opening new sessions: that
// is the authenticator's decision.
func (h *Handler) RevokeSubject(ctx context.Context, subject string) (int, error) {
	if subject == "" {
		return 0, errorf("RevokeSubject: empty subject")
	}
	revoked, err := h.store.RevokeSubject(ctx, subject, h.now())
	return len(revoked), err
}

// DevMinter issues fake tokens locally, for development without an OpenAI
// key: "ek_dev_" and 32 random hex digits, useless against OpenAI. The zero
// value is ready to use.
type DevMinter struct {
	// Now is the clock for ExpiresAt; nil means time.Now.
	Now func() time.Time
}

var _ Minter = (*DevMinter)(nil)

// DevTokenPrefix starts every DevMinter token.
const DevTokenPrefix = "ek_dev_"

// Mint implements Minter.
func (d *DevMinter) Mint(ctx context.Context, req MintRequest) (Token, error) {
	if err := ctx.Err(); err != nil {
		return Token{}, err
	}
	now := time.Now
	if d != nil && d.Now != nil {
		now = d.Now
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	return Token{Value: DevTokenPrefix + hex.EncodeToString(b[:]), ExpiresAt: now().Add(req.TTL)}, nil
}

// client is who a request comes from, resolved once per request.
type client struct {
	ip  string // full address
	key string // limit and block key
	tls bool   // arrived over TLS (directly or at a trusted proxy)
}

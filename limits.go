package realtimeauth

import (
	"reflect"
	"strings"
	"time"

	"golang.org/x/time/rate"
)

// Rate is N events per Per: an allowance of Limits. N is in 1..1023 and
// Per a positive multiple of 4ns. Any interval of Per's length admits at
// most max(N+1, 5N/4) events (see NewMemoryLimiter); a refused request
// does not count.
type Rate struct {
	N   int
	Per time.Duration
}

// Limits bounds what a client, a user and the whole handler may cost. A
// zero field keeps its default, stated in its doc; WithLimits sets the
// others. A client is an IPv4 address or an IPv6 /64. docs/limits.md
// works out what the allowances and caps together let one client, one
// IPv6 site and one user cost at most.
type Limits struct {
	// Sessions is how many new sessions (token requests and relayed calls)
	// a client may open. Default {10, time.Minute}.
	Sessions Rate
	// Mints is how many tokens a client may be minted, by token, refresh
	// and call requests together. With Sessions and MaxSessionsPerClient
	// it bounds what one client costs. Default {30, time.Minute}.
	Mints Rate
	// SubjectMints limits the tokens minted for one subject, by token,
	// refresh and call requests together, from any client. Default: none.
	// Needs WithAuthenticator.
	SubjectMints Rate
	// PrefixShare is how many clients one IPv6 /48 counts as at most: the
	// /48 has its own Sessions and Mints allowances, PrefixShare times each
	// client's N (at most 1023), and its /64s together hold at most
	// PrefixShare times MaxCallsPerClient live calls, so that a site's
	// 65,536 /64s do not each get a full share. Default 16; valid 1..65536.
	PrefixShare int

	// MaxSessions caps the live sessions of the store. When it is full, a
	// new session of a client holding fewer sessions than the heaviest
	// client closes the heaviest client's least recently used session; a
	// client among the heaviest gets 429 too_many_sessions. Default
	// 1,000,000; valid 1..100,000,000.
	MaxSessions int
	// MaxSessionsPerClient caps a client's live sessions. A new session at
	// the cap closes the client's least recently used one (event
	// session_evicted; its refresh then answers 404 session_not_found), so
	// that a user who reloads a page many times is never locked out.
	// Default 10; valid 1..1,000,000.
	MaxSessionsPerClient int
	// MaxSessionsPerSubject caps a user's live sessions (429
	// too_many_sessions beyond it), checked and counted atomically.
	// Default 0, no cap; valid 0..1,000,000. Needs WithAuthenticator.
	MaxSessionsPerSubject int

	// TokenTTL is the life of each ephemeral token. Default 60s; valid
	// 10s..2h (OpenAI's own bounds), in whole seconds.
	TokenTTL time.Duration
	// SessionTTL is how long a session can be refreshed after it was
	// opened. Default 1h (or TokenTTL, when that is longer); valid from
	// TokenTTL to 24h.
	SessionTTL time.Duration
	// MaxRefreshes caps the refreshes of one session. Default 120; valid
	// 1..1,000,000.
	MaxRefreshes int
	// MinRefreshInterval is how soon after a session's last token it may
	// be refreshed: sooner gets 429 refresh_too_soon. Default 10s;
	// negative means no minimum; at most SessionTTL.
	MinRefreshInterval time.Duration

	// MaxCallsPerClient caps a client's live relayed calls: one more is
	// refused with 429 too_many_calls before any upstream call. An IPv6
	// /48 holds at most PrefixShare times as many (its /64s together), as
	// it counts for at most that many clients in the allowances. Default
	// 2; valid 1..1000.
	MaxCallsPerClient int
	// MaxCallsPerSubject caps a user's live calls, across clients, as
	// MaxCallsPerClient does a client's. Default 0, off; valid 1..1000.
	// Needs WithAuthenticator.
	MaxCallsPerSubject int
	// MaxCallDuration hangs every relayed call up that long after the
	// upstream answered it: within a second of the deadline, exactly once
	// (across the instances that share a call registry). Default 0, off: a
	// call lasts until its DELETE, its end, or OpenAI's own 60-minute
	// limit. Valid 10s..60m.
	MaxCallDuration time.Duration

	// MaxBodyBytes caps a request body: larger bodies get 413
	// payload_too_large. Default 64 KiB; valid 64 B..10 MiB.
	MaxBodyBytes int64

	// UpstreamRate and UpstreamBurst are a per-process budget on mint
	// calls, a token bucket of UpstreamRate mints per second holding
	// UpstreamBurst, so that a flood from many clients cannot exhaust the
	// organisation's OpenAI limits. It is looked at before the store and
	// taken only once every other check has passed. Exhausted, a request
	// gets 503 upstream_busy with Retry-After and the upstream is not
	// called. Default: off. Set, the rate must be positive (rate.Inf is
	// allowed) and the burst at least 1.
	UpstreamRate  rate.Limit
	UpstreamBurst int
	// UpstreamTimeout bounds each mint, retries included, unless the
	// Minter mints in-process (see Minter). Default 10s; valid 100ms..2m.
	UpstreamTimeout time.Duration
}

// WithLimits sets the limits l gives, its non-zero fields, and leaves the
// others as they were: repeated calls merge, a later non-zero field
// winning. New checks the result and names the field at fault.
func WithLimits(l Limits) Option {
	return func(c *config) {
		dst, src := reflect.ValueOf(&c.lim).Elem(), reflect.ValueOf(l)
		for i := range src.NumField() {
			if f := src.Field(i); !f.IsZero() {
				dst.Field(i).Set(f)
			}
		}
	}
}

// The defaults of Limits, stated in its field docs.
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
	defaultMaxCallsPerClient  = 2
)

// Bounds of the call limits.
const (
	minCallDuration = 10 * time.Second
	// maxCallDuration is OpenAI's own limit on a Realtime call, after
	// which the registry forgets a call that nobody ended.
	maxCallDuration = 60 * time.Minute
	maxCallsCap     = 1000
)

// orDefault sets *v to def when it is zero.
func orDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// resolveLimits fills in the defaults of c.lim and checks it; what it
// reports names the field at fault.
func (c *config) resolveLimits(bad func(string, ...any)) {
	l := &c.lim
	orDefault(&l.Sessions, Rate{defaultRateLimit, time.Minute})
	orDefault(&l.Mints, Rate{defaultMintLimit, time.Minute})
	orDefault(&l.PrefixShare, defaultPrefixShare)
	orDefault(&l.MaxSessionsPerClient, defaultMaxPerClient)
	orDefault(&l.MaxSessions, defaultMaxSessions)
	orDefault(&l.MaxCallsPerClient, defaultMaxCallsPerClient)
	orDefault(&l.MaxBodyBytes, defaultMaxBodyBytes)
	orDefault(&l.UpstreamTimeout, defaultUpstreamTimeout)
	rates := []struct {
		name string
		r    Rate
	}{{"Sessions", l.Sessions}, {"Mints", l.Mints}, {"SubjectMints", l.SubjectMints}}
	for _, r := range rates {
		if r.r == (Rate{}) {
			continue
		}
		if err := checkLimit("Limits."+r.name, r.r.N, r.r.Per); err != nil {
			bad("%v", strings.TrimPrefix(err.Error(), "realtimeauth: "))
		}
	}
	in := func(field string, v, lo, hi int) {
		if v < lo || v > hi {
			bad("Limits.%s: %d is outside %d..%d", field, v, lo, hi)
		}
	}
	in("PrefixShare", l.PrefixShare, 1, 65536)
	c.prefixRateLimit = min(l.Sessions.N*l.PrefixShare, maxLimit)
	c.prefixMintLimit = min(l.Mints.N*l.PrefixShare, maxLimit)
	in("MaxSessionsPerClient", l.MaxSessionsPerClient, 1, 1_000_000)
	in("MaxSessions", l.MaxSessions, 1, 100_000_000)
	in("MaxSessionsPerSubject", l.MaxSessionsPerSubject, 0, 1_000_000)
	in("MaxCallsPerClient", l.MaxCallsPerClient, 1, maxCallsCap)
	if l.MaxCallsPerSubject != 0 {
		in("MaxCallsPerSubject", l.MaxCallsPerSubject, 1, maxCallsCap)
	}
	if d := l.MaxCallDuration; d != 0 && (d < minCallDuration || d > maxCallDuration) {
		bad("Limits.MaxCallDuration: %v is outside 10s..60m", d)
	}
	if l.MaxBodyBytes < 64 || l.MaxBodyBytes > 10<<20 {
		bad("Limits.MaxBodyBytes: %d is outside 64..10485760", l.MaxBodyBytes)
	}
	if d := l.UpstreamTimeout; d < 100*time.Millisecond || d > 2*time.Minute {
		bad("Limits.UpstreamTimeout: %v is outside 100ms..2m", d)
	}
	if c.upstreamBudgetSet() && (l.UpstreamRate <= 0 || l.UpstreamBurst < 1) {
		bad("Limits.UpstreamRate, UpstreamBurst: rate %v must be positive and burst %d at least 1", l.UpstreamRate, l.UpstreamBurst)
	}
	c.resolveLives(bad)
	c.resolveSubject(bad)
}

// resolveSubject checks that the limits per subject have one to count.
func (c *config) resolveSubject(bad func(string, ...any)) {
	if c.authenticator != nil {
		return
	}
	l := &c.lim
	for _, f := range []struct {
		name string
		set  bool
	}{{"SubjectMints", l.SubjectMints != Rate{}}, {"MaxSessionsPerSubject", l.MaxSessionsPerSubject != 0},
		{"MaxCallsPerSubject", l.MaxCallsPerSubject != 0}} {
		if f.set {
			bad("Limits.%s needs WithAuthenticator: without it there is no subject", f.name)
		}
	}
}

// resolveLives fills in and checks the token and session lives and the
// refresh policy.
func (c *config) resolveLives(bad func(string, ...any)) {
	l := &c.lim
	orDefault(&l.TokenTTL, defaultTokenTTL)
	if d := l.TokenTTL; d < 10*time.Second || d > 2*time.Hour || d%time.Second != 0 {
		bad("Limits.TokenTTL: %v is outside 10s..2h or not whole seconds", d)
	}
	orDefault(&l.SessionTTL, max(defaultSessionTTL, l.TokenTTL))
	if l.SessionTTL < l.TokenTTL || l.SessionTTL > 24*time.Hour {
		bad("Limits.SessionTTL: %v is outside the token TTL (%v)..24h", l.SessionTTL, l.TokenTTL)
	}
	orDefault(&l.MaxRefreshes, defaultMaxRefreshes)
	if l.MaxRefreshes < 1 || l.MaxRefreshes > 1_000_000 {
		bad("Limits.MaxRefreshes: %d is outside 1..1000000", l.MaxRefreshes)
	}
	orDefault(&l.MinRefreshInterval, defaultMinRefreshInterval)
	if l.MinRefreshInterval < 0 {
		l.MinRefreshInterval = 0 // no minimum
	}
	if l.MinRefreshInterval > l.SessionTTL {
		bad("Limits.MinRefreshInterval: %v is over the session TTL (%v)", l.MinRefreshInterval, l.SessionTTL)
	}
}

// upstreamBudgetSet reports whether Limits asks for an upstream budget.
func (c *config) upstreamBudgetSet() bool { return c.lim.UpstreamRate != 0 || c.lim.UpstreamBurst != 0 }

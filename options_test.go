package realtimeauth_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/realtimeauthtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"
)

// TestNewRefusesBadOptions: every invalid value and combination is an
// error naming the option, or the field of Limits, at fault.
func TestNewRefusesBadOptions(t *testing.T) {
	type opts = []realtimeauth.Option
	type l = realtimeauth.Limits
	type r = realtimeauth.Rate
	lim := func(l realtimeauth.Limits, o ...realtimeauth.Option) opts {
		return append(o, realtimeauth.WithLimits(l))
	}
	auth := realtimeauth.WithAuthenticator(bearerAuth)
	tests := []struct {
		name string
		opts opts
		want []string
	}{
		{"nil option", opts{nil}, []string{"nil Option"}},
		{"rate limit zero", lim(l{Sessions: r{N: 0, Per: time.Minute}}), []string{"Limits.Sessions: limit 0"}},
		{"rate limit too high", lim(l{Sessions: r{N: 1024, Per: time.Minute}}), []string{"Limits.Sessions: limit 1024"}},
		{"rate window zero", lim(l{Sessions: r{N: 5}}), []string{"Limits.Sessions: window"}},
		{"token TTL short", lim(l{TokenTTL: 9 * time.Second}), []string{"Limits.TokenTTL"}},
		{"token TTL long", lim(l{TokenTTL: 2*time.Hour + time.Second}), []string{"Limits.TokenTTL"}},
		{"token TTL fractional", lim(l{TokenTTL: 10500 * time.Millisecond}), []string{"Limits.TokenTTL"}},
		{"token TTL negative", lim(l{TokenTTL: -time.Minute}), []string{"Limits.TokenTTL"}},
		{"session TTL under token TTL", lim(l{TokenTTL: time.Minute, SessionTTL: 30 * time.Second}), []string{"Limits.SessionTTL"}},
		{"session TTL long", lim(l{SessionTTL: 25 * time.Hour}), []string{"Limits.SessionTTL"}},
		{"session TTL negative", lim(l{SessionTTL: -time.Hour}), []string{"Limits.SessionTTL"}},
		{"refreshes negative", lim(l{MaxRefreshes: -1}), []string{"Limits.MaxRefreshes"}},
		{"refreshes too many", lim(l{MaxRefreshes: 1_000_001}), []string{"Limits.MaxRefreshes"}},
		{"interval over session TTL", lim(l{MinRefreshInterval: 2 * time.Hour}), []string{"Limits.MinRefreshInterval"}},
		{"base path relative", opts{realtimeauth.WithBasePath("api")}, []string{"WithBasePath"}},
		{"base path trailing slash", opts{realtimeauth.WithBasePath("/api/")}, []string{"WithBasePath"}},
		{"base path with space", opts{realtimeauth.WithBasePath("/a b")}, []string{"WithBasePath"}},
		{"base path with query", opts{realtimeauth.WithBasePath("/a?b")}, []string{"WithBasePath"}},
		{"upstream timeout short", lim(l{UpstreamTimeout: 99 * time.Millisecond}), []string{"Limits.UpstreamTimeout"}},
		{"upstream timeout long", lim(l{UpstreamTimeout: 2*time.Minute + 1}), []string{"Limits.UpstreamTimeout"}},
		{"body cap small", lim(l{MaxBodyBytes: 63}), []string{"Limits.MaxBodyBytes"}},
		{"body cap large", lim(l{MaxBodyBytes: 10<<20 + 1}), []string{"Limits.MaxBodyBytes"}},
		{"CORS header empty", opts{realtimeauth.WithCORSHeaders("")}, []string{"WithCORSHeaders"}},
		{"max sessions negative", lim(l{MaxSessions: -1}), []string{"Limits.MaxSessions"}},
		{"max sessions too many", lim(l{MaxSessions: 100_000_001}), []string{"Limits.MaxSessions"}},
		{"sessions per client negative", lim(l{MaxSessionsPerClient: -1}), []string{"Limits.MaxSessionsPerClient"}},
		{"sessions per client too many", lim(l{MaxSessionsPerClient: 1_000_001}), []string{"Limits.MaxSessionsPerClient"}},
		{"mint limit zero", lim(l{Mints: r{N: 0, Per: time.Minute}}), []string{"Limits.Mints: limit 0"}},
		{"mint limit too high", lim(l{Mints: r{N: 1024, Per: time.Minute}}), []string{"Limits.Mints: limit 1024"}},
		{"mint window zero", lim(l{Mints: r{N: 5}}), []string{"Limits.Mints: window"}},
		{"mint window not a multiple of 4ns", lim(l{Mints: r{N: 5, Per: time.Minute + 1}}), []string{"Limits.Mints: window"}},
		{"prefix share negative", lim(l{PrefixShare: -1}), []string{"Limits.PrefixShare"}},
		{"prefix share too many", lim(l{PrefixShare: 65537}), []string{"Limits.PrefixShare"}},
		{"subject limit without authenticator", lim(l{SubjectMints: r{N: 5, Per: time.Minute}}), []string{"Limits.SubjectMints", "WithAuthenticator"}},
		{"subject limit negative", lim(l{SubjectMints: r{N: -1, Per: time.Minute}}, auth), []string{"Limits.SubjectMints"}},
		{"subject window zero", lim(l{SubjectMints: r{N: 5}}, auth), []string{"Limits.SubjectMints"}},
		{"sessions per subject without authenticator", lim(l{MaxSessionsPerSubject: 3}), []string{"Limits.MaxSessionsPerSubject", "WithAuthenticator"}},
		{"sessions per subject negative", lim(l{MaxSessionsPerSubject: -1}, auth), []string{"Limits.MaxSessionsPerSubject"}},
		{"sessions per subject too many", lim(l{MaxSessionsPerSubject: 1_000_001}, auth), []string{"Limits.MaxSessionsPerSubject"}},
		{"upstream rate zero", lim(l{UpstreamBurst: 1}), []string{"Limits.UpstreamRate"}},
		{"upstream rate negative", lim(l{UpstreamRate: -1, UpstreamBurst: 1}), []string{"Limits.UpstreamRate"}},
		{"upstream burst zero", lim(l{UpstreamRate: 5}), []string{"Limits.UpstreamRate", "UpstreamBurst"}},
		{"origin null", opts{realtimeauth.WithAllowedOrigins("null")}, []string{"WithAllowedOrigins"}},
		{"credentials with star", opts{realtimeauth.WithAllowedOrigins("*"), realtimeauth.WithAllowCredentials(true)}, []string{"WithAllowCredentials"}},
		{"trusted proxy", opts{realtimeauth.WithTrustedProxies("10.0.0.0/99")}, []string{"WithTrustedProxies"}},
		{"several at once", lim(l{TokenTTL: time.Second, MaxBodyBytes: 1}, realtimeauth.WithBasePath("x")),
			[]string{"Limits.TokenTTL", "Limits.MaxBodyBytes", "WithBasePath"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := realtimeauth.New(&realtimeauthtest.Minter{}, tc.opts...)
			require.Error(t, err)
			assert.Nil(t, h)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
			assert.Contains(t, err.Error(), "realtimeauth: ")
		})
	}

	_, err := realtimeauth.New(nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Minter")
}

// TestNewAcceptsTheBounds: the documented range ends are valid.
func TestNewAcceptsTheBounds(t *testing.T) {
	type l = realtimeauth.Limits
	type r = realtimeauth.Rate
	lim := realtimeauth.WithLimits
	for _, o := range [][]realtimeauth.Option{
		{lim(l{TokenTTL: 10 * time.Second, SessionTTL: 10 * time.Second, MaxRefreshes: 1, MinRefreshInterval: 10 * time.Second})},
		{lim(l{TokenTTL: 2 * time.Hour, SessionTTL: 24 * time.Hour, MaxRefreshes: 1_000_000, MinRefreshInterval: -1})},
		{lim(l{TokenTTL: 2 * time.Hour, MinRefreshInterval: 2 * time.Hour})}, // the session TTL follows the token's
		{lim(l{Sessions: r{N: 1, Per: 4 * time.Nanosecond}, UpstreamTimeout: 100 * time.Millisecond, MaxBodyBytes: 64})},
		{lim(l{Sessions: r{N: 1023, Per: time.Hour}, UpstreamTimeout: 2 * time.Minute, MaxBodyBytes: 10 << 20})},
		{lim(l{Mints: r{N: 1, Per: 4 * time.Nanosecond}, PrefixShare: 1}), lim(l{Mints: r{N: 1023, Per: time.Hour}, PrefixShare: 65536})},
		{realtimeauth.WithAbuseGuard(nil), lim(l{MaxSessions: 1, MaxSessionsPerClient: 1})},
		{lim(l{MaxSessions: 100_000_000, MaxSessionsPerClient: 1_000_000})},
		{realtimeauth.WithAuthenticator(bearerAuth), lim(l{SubjectMints: r{N: 1, Per: time.Second}, MaxSessionsPerSubject: 1_000_000})},
		{lim(l{UpstreamRate: rate.Inf, UpstreamBurst: 1}), lim(l{UpstreamRate: 1e-9})},
		{realtimeauth.WithBasePath("/"), realtimeauth.WithAllowedOrigins("*"), realtimeauth.WithTrustedProxies("10.0.0.0/8", "::1", " 192.0.2.1 ")},
		{realtimeauth.WithLogger(nil), realtimeauth.WithClock(nil), realtimeauth.WithCORSHeaders("X-Custom")},
	} {
		h, err := realtimeauth.New(&realtimeauthtest.Minter{}, o...)
		require.NoError(t, err)
		require.NoError(t, h.Close())
	}
}

// TestDefaults: what New does without options.
func TestDefaults(t *testing.T) {
	clock := realtimeauthtest.NewClock(t0)
	m := &realtimeauthtest.Minter{Now: clock.Now}
	h, err := realtimeauth.New(m, realtimeauth.WithClock(clock.Now), realtimeauth.WithLogger(quietLogger()))
	require.NoError(t, err)
	for range 10 { // Limits.Sessions's default
		require.Equal(t, http.StatusOK, serveReq(h, req{path: tokenURL}).Code)
	}
	assertError(t, serveReq(h, req{path: tokenURL}), 429, "rate_limited", -1)
	assert.Equal(t, 60*time.Second, m.Requests()[0].TTL)
	id := m.Requests()[0].SessionID
	clock.Advance(9 * time.Second)
	assertError(t, serveReq(h, req{path: refrURL, body: refreshBody(id)}), 429, "refresh_too_soon", 1)
	clock.Advance(time.Second)
	assert.Equal(t, http.StatusOK, serveReq(h, req{path: refrURL, body: refreshBody(id)}).Code)
	clock.Advance(time.Hour) // the default session TTL
	assertError(t, serveReq(h, req{path: refrURL, body: refreshBody(id)}), 404, "session_not_found", 0)
	// Default body cap: 64 KiB, from another client.
	pad := func(n int) string { return `{"a":"` + strings.Repeat("x", n-8) + `"}` }
	assert.Equal(t, http.StatusOK, serveReq(h, req{path: tokenURL, remote: "192.0.2.9:1", body: pad(64 << 10)}).Code)
	assertError(t, serveReq(h, req{path: tokenURL, remote: "192.0.2.9:1", body: pad(64<<10 + 1)}), 413, "payload_too_large", 0)
}

// TestWithLimitsMerges: WithLimits sets only the fields it is given, a
// later non-zero field winning; a negative MinRefreshInterval means no
// minimum.
func TestWithLimitsMerges(t *testing.T) {
	r := newRig(t,
		realtimeauth.WithLimits(realtimeauth.Limits{Sessions: realtimeauth.Rate{N: 1, Per: time.Minute}, MaxRefreshes: 9}),
		realtimeauth.WithLimits(realtimeauth.Limits{MinRefreshInterval: -1, MaxRefreshes: 2}),
		realtimeauth.WithLimits(realtimeauth.Limits{}))
	id := issueToken(t, r.h, defaultRemote)["sessionId"].(string)
	assertError(t, serveReq(r.h, req{path: tokenURL}), 429, "rate_limited", -1) // the first call's Sessions
	for range 2 {                                                               // at once: no minimum interval; the second call's MaxRefreshes
		require.Equal(t, http.StatusOK, serveReq(r.h, req{path: refrURL, body: refreshBody(id)}).Code)
	}
	assertError(t, serveReq(r.h, req{path: refrURL, body: refreshBody(id)}), 403, "refresh_limit_reached", 0)
}

// TestBasePath: the endpoints follow WithBasePath, "/" included.
func TestBasePath(t *testing.T) {
	for _, tc := range []struct{ base, token string }{
		{"/voice", "/voice/token"},
		{"/", "/token"},
		{"/a/b", "/a/b/token"},
	} {
		r := newRig(t, realtimeauth.WithBasePath(tc.base))
		assert.Equal(t, http.StatusOK, serveReq(r.h, req{path: tc.token}).Code, tc.base)
		assertError(t, serveReq(r.h, req{path: tokenURL}), 404, "not_found", 0)
	}
}

// One error names every option at fault, whichever check finds it.
func TestNewNamesEveryBadOption(t *testing.T) {
	_, err := realtimeauth.New(&realtimeauthtest.Minter{},
		realtimeauth.WithLimits(realtimeauth.Limits{TokenTTL: 5 * time.Second}),
		realtimeauth.WithAllowedOrigins("null", "ftp://example.com", "https://ok.example.com"),
		realtimeauth.WithTrustedProxies("10.0.0.0/33", "not-an-address"),
	)
	require.Error(t, err)
	for _, want := range []string{
		"Limits.TokenTTL",
		`WithAllowedOrigins: "null"`,
		`WithAllowedOrigins: "ftp://example.com"`,
		`WithTrustedProxies: "10.0.0.0/33"`,
		`WithTrustedProxies: "not-an-address"`,
	} {
		assert.Contains(t, err.Error(), want)
	}
	assert.NotContains(t, err.Error(), "ok.example.com")
}

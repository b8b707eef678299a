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
)

// TestNewRefusesBadOptions: every invalid value and combination is an
// error naming the option at fault.
func TestNewRefusesBadOptions(t *testing.T) {
	type opts = []realtimeauth.Option
	auth := realtimeauth.WithAuthenticator(bearerAuth)
	tests := []struct {
		name string
		opts opts
		want []string
	}{
		{"nil option", opts{nil}, []string{"nil Option"}},
		{"rate limit zero", opts{realtimeauth.WithRateLimit(0, time.Minute)}, []string{"WithRateLimit"}},
		{"rate limit too high", opts{realtimeauth.WithRateLimit(1024, time.Minute)}, []string{"WithRateLimit"}},
		{"rate window zero", opts{realtimeauth.WithRateLimit(5, 0)}, []string{"WithRateLimit"}},
		{"token TTL short", opts{realtimeauth.WithTokenTTL(9 * time.Second)}, []string{"WithTokenTTL"}},
		{"token TTL long", opts{realtimeauth.WithTokenTTL(2*time.Hour + time.Second)}, []string{"WithTokenTTL"}},
		{"token TTL fractional", opts{realtimeauth.WithTokenTTL(10500 * time.Millisecond)}, []string{"WithTokenTTL"}},
		{"token TTL negative", opts{realtimeauth.WithTokenTTL(-time.Minute)}, []string{"WithTokenTTL"}},
		{"session TTL under token TTL", opts{realtimeauth.WithTokenTTL(time.Minute), realtimeauth.WithSessionTTL(30 * time.Second)}, []string{"WithSessionTTL"}},
		{"session TTL long", opts{realtimeauth.WithSessionTTL(25 * time.Hour)}, []string{"WithSessionTTL"}},
		{"refreshes zero", opts{realtimeauth.WithRefreshPolicy(0, time.Second)}, []string{"WithRefreshPolicy"}},
		{"refreshes too many", opts{realtimeauth.WithRefreshPolicy(1_000_001, time.Second)}, []string{"WithRefreshPolicy"}},
		{"interval negative", opts{realtimeauth.WithRefreshPolicy(5, -time.Second)}, []string{"WithRefreshPolicy"}},
		{"interval over session TTL", opts{realtimeauth.WithRefreshPolicy(5, 2*time.Hour)}, []string{"WithRefreshPolicy"}},
		{"base path relative", opts{realtimeauth.WithBasePath("api")}, []string{"WithBasePath"}},
		{"base path trailing slash", opts{realtimeauth.WithBasePath("/api/")}, []string{"WithBasePath"}},
		{"base path with space", opts{realtimeauth.WithBasePath("/a b")}, []string{"WithBasePath"}},
		{"base path with query", opts{realtimeauth.WithBasePath("/a?b")}, []string{"WithBasePath"}},
		{"upstream timeout short", opts{realtimeauth.WithUpstreamTimeout(99 * time.Millisecond)}, []string{"WithUpstreamTimeout"}},
		{"upstream timeout long", opts{realtimeauth.WithUpstreamTimeout(2*time.Minute + 1)}, []string{"WithUpstreamTimeout"}},
		{"body cap small", opts{realtimeauth.WithMaxBodyBytes(63)}, []string{"WithMaxBodyBytes"}},
		{"body cap large", opts{realtimeauth.WithMaxBodyBytes(10<<20 + 1)}, []string{"WithMaxBodyBytes"}},
		{"CORS header empty", opts{realtimeauth.WithCORSHeaders("")}, []string{"WithCORSHeaders"}},
		{"max sessions zero", opts{realtimeauth.WithMaxSessions(0)}, []string{"WithMaxSessions"}},
		{"max sessions too many", opts{realtimeauth.WithMaxSessions(100_000_001)}, []string{"WithMaxSessions"}},
		{"sessions per client zero", opts{realtimeauth.WithMaxSessionsPerClient(0)}, []string{"WithMaxSessionsPerClient"}},
		{"mint limit zero", opts{realtimeauth.WithMintLimit(0, time.Minute)}, []string{"WithMintLimit"}},
		{"mint limit too high", opts{realtimeauth.WithMintLimit(1024, time.Minute)}, []string{"WithMintLimit"}},
		{"mint window zero", opts{realtimeauth.WithMintLimit(5, 0)}, []string{"WithMintLimit"}},
		{"prefix share zero", opts{realtimeauth.WithPrefixShare(0)}, []string{"WithPrefixShare"}},
		{"prefix share too many", opts{realtimeauth.WithPrefixShare(65537)}, []string{"WithPrefixShare"}},
		{"subject limit without authenticator", opts{realtimeauth.WithSubjectRateLimit(5, time.Minute)}, []string{"WithSubjectRateLimit", "WithAuthenticator"}},
		{"subject limit negative", opts{auth, realtimeauth.WithSubjectRateLimit(-1, time.Minute)}, []string{"WithSubjectRateLimit"}},
		{"subject window zero", opts{auth, realtimeauth.WithSubjectRateLimit(5, 0)}, []string{"WithSubjectRateLimit"}},
		{"sessions per subject without authenticator", opts{realtimeauth.WithMaxSessionsPerSubject(3)}, []string{"WithMaxSessionsPerSubject", "WithAuthenticator"}},
		{"sessions per subject negative", opts{auth, realtimeauth.WithMaxSessionsPerSubject(-1)}, []string{"WithMaxSessionsPerSubject"}},
		{"sessions per subject too many", opts{auth, realtimeauth.WithMaxSessionsPerSubject(1_000_001)}, []string{"WithMaxSessionsPerSubject"}},
		{"upstream rate zero", opts{realtimeauth.WithUpstreamRate(0, 1)}, []string{"WithUpstreamRate"}},
		{"upstream rate negative", opts{realtimeauth.WithUpstreamRate(-1, 1)}, []string{"WithUpstreamRate"}},
		{"upstream burst zero", opts{realtimeauth.WithUpstreamRate(5, 0)}, []string{"WithUpstreamRate"}},
		{"origin null", opts{realtimeauth.WithAllowedOrigins("null")}, []string{"WithAllowedOrigins"}},
		{"credentials with star", opts{realtimeauth.WithAllowedOrigins("*"), realtimeauth.WithAllowCredentials(true)}, []string{"WithAllowCredentials"}},
		{"trusted proxy", opts{realtimeauth.WithTrustedProxies("10.0.0.0/99")}, []string{"WithTrustedProxies"}},
		{"several at once", opts{realtimeauth.WithTokenTTL(time.Second), realtimeauth.WithMaxBodyBytes(1), realtimeauth.WithBasePath("x")},
			[]string{"WithTokenTTL", "WithMaxBodyBytes", "WithBasePath"}},
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
	for _, o := range [][]realtimeauth.Option{
		{realtimeauth.WithTokenTTL(10 * time.Second), realtimeauth.WithSessionTTL(10 * time.Second), realtimeauth.WithRefreshPolicy(1, 10*time.Second)},
		{realtimeauth.WithTokenTTL(2 * time.Hour), realtimeauth.WithSessionTTL(24 * time.Hour), realtimeauth.WithRefreshPolicy(1_000_000, 0)},
		{realtimeauth.WithRateLimit(1, 4*time.Nanosecond), realtimeauth.WithUpstreamTimeout(100 * time.Millisecond), realtimeauth.WithMaxBodyBytes(64)},
		{realtimeauth.WithRateLimit(1023, time.Hour), realtimeauth.WithUpstreamTimeout(2 * time.Minute), realtimeauth.WithMaxBodyBytes(10 << 20)},
		{realtimeauth.WithAbuseGuard(nil), realtimeauth.WithMaxSessions(1), realtimeauth.WithMaxSessionsPerClient(1)},
		{realtimeauth.WithAuthenticator(bearerAuth), realtimeauth.WithSubjectRateLimit(1, time.Second), realtimeauth.WithMaxSessionsPerSubject(1_000_000)},
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
	for range 10 { // WithRateLimit's default
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
		realtimeauth.WithTokenTTL(5*time.Second),
		realtimeauth.WithAllowedOrigins("null", "ftp://example.com", "https://ok.example.com"),
		realtimeauth.WithTrustedProxies("10.0.0.0/33", "not-an-address"),
	)
	require.Error(t, err)
	for _, want := range []string{
		"WithTokenTTL",
		`WithAllowedOrigins: "null"`,
		`WithAllowedOrigins: "ftp://example.com"`,
		`WithTrustedProxies: "10.0.0.0/33"`,
		`WithTrustedProxies: "not-an-address"`,
	} {
		assert.Contains(t, err.Error(), want)
	}
	assert.NotContains(t, err.Error(), "ok.example.com")
}

package realtimeauth_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/realtimeauthtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// corsHeaders returns the Access-Control-* headers of an answer.
func corsHeaders(h http.Header) http.Header {
	out := http.Header{}
	for k, v := range h {
		if strings.HasPrefix(k, "Access-Control-") {
			out[k] = v
		}
	}
	return out
}

func preflightReq(path, o string) req {
	return req{method: http.MethodOptions, path: path, headers: map[string]string{
		"Origin":                         o,
		"Access-Control-Request-Method":  "POST",
		"Access-Control-Request-Headers": "authorization,content-type", // as browsers send it: sorted, lower case
	}}
}

func TestCORS(t *testing.T) {
	tests := []struct {
		name    string
		origins []string // nil: WithAllowedOrigins not called
		creds   bool
		origin  string
		allowed bool
	}{
		{name: "listed origin", origins: []string{origin}, origin: origin, allowed: true},
		{name: "unlisted origin", origins: []string{origin}, origin: "https://evil.example.net"},
		{name: "other scheme", origins: []string{origin}, origin: "http://app.example.com"},
		{name: "other port", origins: []string{origin}, origin: "https://app.example.com:8443"},
		{name: "default port normalised", origins: []string{"https://app.example.com:443"}, origin: origin, allowed: true},
		{name: "default allows nothing", origin: origin},
		{name: "default refuses localhost", origin: "http://localhost:4321"},
		{name: "star", origins: []string{"*"}, origin: "https://anything.example.org", allowed: true},
		{name: "null with star", origins: []string{"*"}, origin: "null"},
		{name: "null listed elsewhere", origins: []string{origin}, origin: "null"},
		{name: "wildcard subdomain", origins: []string{"https://*.example.com"}, origin: "https://a.example.com", allowed: true},
		{name: "wildcard deep subdomain", origins: []string{"https://*.example.com"}, origin: "https://a.b.example.com", allowed: true},
		{name: "wildcard not the apex", origins: []string{"https://*.example.com"}, origin: "https://example.com"},
		{name: "wildcard not a lookalike", origins: []string{"https://*.example.com"}, origin: "https://evilexample.com"},
		{name: "wildcard not a suffix trick", origins: []string{"https://*.example.com"}, origin: "https://a.example.com.evil.net"},
		{name: "wildcard scheme", origins: []string{"https://*.example.com"}, origin: "http://a.example.com"},
		{name: "credentials", origins: []string{origin}, creds: true, origin: origin, allowed: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := realtimeauthtest.NewClock(t0)
			opts := []realtimeauth.Option{realtimeauth.WithClock(clock.Now), realtimeauth.WithLogger(quietLogger())}
			if tc.origins != nil {
				opts = append(opts, realtimeauth.WithAllowedOrigins(tc.origins...))
			}
			if tc.creds {
				opts = append(opts, realtimeauth.WithAllowCredentials(true))
			}
			m := &realtimeauthtest.Minter{Now: clock.Now}
			h, err := realtimeauth.New(m, opts...)
			require.NoError(t, err)

			// The actual request.
			w := serveReq(h, req{path: tokenURL, headers: map[string]string{"Origin": tc.origin}})
			if tc.allowed {
				require.Equal(t, http.StatusOK, w.Code, w.Body.String())
				assert.Equal(t, tc.origin, w.Header().Get("Access-Control-Allow-Origin"))
				assert.Contains(t, w.Header().Values("Vary"), "Origin")
				if tc.creds {
					assert.Equal(t, "true", w.Header().Get("Access-Control-Allow-Credentials"))
				} else {
					assert.Empty(t, w.Header().Get("Access-Control-Allow-Credentials"))
				}
			} else {
				assertError(t, w, http.StatusForbidden, "origin_not_allowed", 0)
				assert.Empty(t, corsHeaders(w.Header()))
				assert.Equal(t, 0, m.Calls())
			}

			// The preflight, for both endpoints.
			for _, path := range []string{tokenURL, refrURL} {
				w = serveReq(h, preflightReq(path, tc.origin))
				if tc.allowed {
					assert.Equal(t, http.StatusNoContent, w.Code)
					assert.Equal(t, tc.origin, w.Header().Get("Access-Control-Allow-Origin"))
					assert.Equal(t, "POST", w.Header().Get("Access-Control-Allow-Methods"))
					allowHdrs := strings.ToLower(w.Header().Get("Access-Control-Allow-Headers"))
					assert.Contains(t, allowHdrs, "content-type")
					assert.Contains(t, allowHdrs, "authorization")
					assert.Contains(t, w.Header().Get("Vary"), "Origin")
				} else {
					assertError(t, w, http.StatusForbidden, "origin_not_allowed", 0)
					assert.Empty(t, corsHeaders(w.Header()))
				}
			}

			// Health answers whatever the Origin.
			w = serveReq(h, req{method: http.MethodGet, path: healthU, headers: map[string]string{"Origin": tc.origin}})
			assert.Equal(t, http.StatusOK, w.Code)
			assert.Equal(t, 0, m.Calls()-btoi(tc.allowed))
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestNoOriginProceeds: requests without Origin are not a CORS matter,
// even with no origin configured.
func TestNoOriginProceeds(t *testing.T) {
	h, err := realtimeauth.New(&realtimeauthtest.Minter{}, realtimeauth.WithLogger(quietLogger()))
	require.NoError(t, err)
	w := serveReq(h, req{path: tokenURL})
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	assert.Empty(t, corsHeaders(w.Header()))
	assert.Equal(t, "Origin", w.Header().Get("Vary"))

	// A plain OPTIONS (no preflight) is answered with Allow.
	w = serveReq(h, req{method: http.MethodOptions, path: tokenURL})
	assert.Equal(t, http.StatusNoContent, w.Code)
	assert.Equal(t, "OPTIONS, POST", w.Header().Get("Allow"))
	assert.Empty(t, corsHeaders(w.Header()))
}

func TestCORSRefusedAtNew(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []realtimeauth.Option
		want string
	}{
		{"null", []realtimeauth.Option{realtimeauth.WithAllowedOrigins("null")}, "WithAllowedOrigins"},
		{"NULL", []realtimeauth.Option{realtimeauth.WithAllowedOrigins("NULL")}, "WithAllowedOrigins"},
		{"star with others", []realtimeauth.Option{realtimeauth.WithAllowedOrigins("*", origin)}, "WithAllowedOrigins"},
		{"credentials with star", []realtimeauth.Option{realtimeauth.WithAllowedOrigins("*"), realtimeauth.WithAllowCredentials(true)}, "WithAllowCredentials"},
		{"bare wildcard", []realtimeauth.Option{realtimeauth.WithAllowedOrigins("https://*")}, "WithAllowedOrigins"},
		{"wildcard on a TLD", []realtimeauth.Option{realtimeauth.WithAllowedOrigins("https://*.com")}, "WithAllowedOrigins"},
		{"infix wildcard", []realtimeauth.Option{realtimeauth.WithAllowedOrigins("https://*example.com")}, "WithAllowedOrigins"},
		{"path", []realtimeauth.Option{realtimeauth.WithAllowedOrigins("https://app.example.com/x")}, "WithAllowedOrigins"},
		{"trailing slash", []realtimeauth.Option{realtimeauth.WithAllowedOrigins("https://app.example.com/")}, "WithAllowedOrigins"},
		{"no scheme", []realtimeauth.Option{realtimeauth.WithAllowedOrigins("app.example.com")}, "WithAllowedOrigins"},
		{"ftp", []realtimeauth.Option{realtimeauth.WithAllowedOrigins("ftp://app.example.com")}, "WithAllowedOrigins"},
		{"empty", []realtimeauth.Option{realtimeauth.WithAllowedOrigins("")}, "WithAllowedOrigins"},
		{"bad CORS header", []realtimeauth.Option{realtimeauth.WithCORSHeaders("Bad Header")}, "WithCORSHeaders"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := realtimeauth.New(&realtimeauthtest.Minter{}, tc.opts...)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

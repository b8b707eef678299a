package realtimeauth_test

import (
	"crypto/sha512"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/realtimeauthtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const testOrigin = "https://app.example.com"

func newScriptHandler(t *testing.T, opts ...realtimeauth.Option) *realtimeauth.Handler {
	t.Helper()
	clock := realtimeauthtest.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	opts = append([]realtimeauth.Option{
		realtimeauth.WithAllowedOrigins(testOrigin),
		realtimeauth.WithClock(clock.Now),
	}, opts...)
	h, err := realtimeauth.New(&realtimeauthtest.Minter{Now: clock.Now}, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Close() })
	return h
}

func serve(h http.Handler, method, path string, hdr map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, nil)
	r.RemoteAddr = "192.0.2.1:1234"
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	require.NoError(t, err)
	return b
}

func errorCode(t *testing.T, w *httptest.ResponseRecorder) realtimeauth.Code {
	t.Helper()
	var body struct {
		Success bool              `json:"success"`
		Code    realtimeauth.Code `json:"code"`
	}
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &body), w.Body.String())
	assert.False(t, body.Success)
	return body.Code
}

func TestClientScriptServed(t *testing.T) {
	h := newScriptHandler(t)
	want := readFile(t, "js/realtimeauth.js")

	w := serve(h, http.MethodGet, "/api/voice-agent/client.js", nil)
	require.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, want, w.Body.Bytes())
	hd := w.Header()
	assert.Equal(t, "text/javascript; charset=utf-8", hd.Get("Content-Type"))
	assert.Equal(t, "no-cache", hd.Get("Cache-Control"))
	assert.Equal(t, "nosniff", hd.Get("X-Content-Type-Options"))
	assert.Equal(t, "Origin", hd.Get("Vary"))
	assert.Equal(t, len(want), atoi(t, hd.Get("Content-Length")))
	etag := hd.Get("ETag")
	assert.Regexp(t, `^"[0-9a-f]{32}"$`, etag, "a strong ETag")
	// The API's JSON-only headers do not belong on a script.
	for _, k := range []string{"Content-Security-Policy", "X-Frame-Options", "Pragma", "Referrer-Policy",
		"Access-Control-Allow-Origin", "Strict-Transport-Security"} {
		assert.Empty(t, hd.Get(k), k)
	}

	// Every handler serves the same ETag: it is the content's hash.
	w2 := serve(newScriptHandler(t), http.MethodGet, "/api/voice-agent/client.js", nil)
	assert.Equal(t, etag, w2.Header().Get("ETag"))
}

func TestClientScriptIntegrity(t *testing.T) {
	w := serve(newScriptHandler(t), http.MethodGet, "/api/voice-agent/client.js", nil)
	require.Equal(t, http.StatusOK, w.Code)
	sum := sha512.Sum384(w.Body.Bytes())
	assert.Equal(t, "sha384-"+base64.StdEncoding.EncodeToString(sum[:]), realtimeauth.ClientScriptIntegrity())
}

// TestClientScriptIntegrityDocumented keeps the hash the docs show for
// client.js in step with the script.
func TestClientScriptIntegrityDocumented(t *testing.T) {
	sri := regexp.MustCompile(`sha384-[A-Za-z0-9+/]{64}`)
	found := 0
	for _, name := range []string{"README.md", "docs/clients.md", "js/README.md"} {
		b, err := os.ReadFile(name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		require.NoError(t, err)
		for i, line := range strings.Split(string(b), "\n") {
			if !strings.Contains(line, "client.js") {
				continue
			}
			for _, h := range sri.FindAllString(line, -1) {
				found++
				assert.Equal(t, realtimeauth.ClientScriptIntegrity(), h, "%s:%d shows a stale hash", name, i+1)
			}
		}
	}
	assert.Positive(t, found, "the docs show the client's integrity hash")
}

func TestClientTypesServed(t *testing.T) {
	w := serve(newScriptHandler(t), http.MethodGet, "/api/voice-agent/client.d.ts", nil)
	require.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, readFile(t, "js/realtimeauth.d.ts"), w.Body.Bytes())
	assert.Equal(t, "application/typescript; charset=utf-8", w.Header().Get("Content-Type"))
	assert.NotEqual(t, serve(newScriptHandler(t), http.MethodGet, "/api/voice-agent/client.js", nil).Header().Get("ETag"),
		w.Header().Get("ETag"))
}

func TestClientScriptHead(t *testing.T) {
	w := serve(newScriptHandler(t), http.MethodHead, "/api/voice-agent/client.js", nil)
	require.Equal(t, http.StatusOK, w.Code)
	assert.Empty(t, w.Body.Bytes())
	assert.Equal(t, len(readFile(t, "js/realtimeauth.js")), atoi(t, w.Header().Get("Content-Length")))
	assert.NotEmpty(t, w.Header().Get("ETag"))
}

func TestClientScriptConditional(t *testing.T) {
	h := newScriptHandler(t)
	etag := serve(h, http.MethodGet, "/api/voice-agent/client.js", nil).Header().Get("ETag")
	require.NotEmpty(t, etag)
	for _, tc := range []struct {
		name, ifNoneMatch string
		want              int
	}{
		{"exact", etag, http.StatusNotModified},
		{"in a list", `"abc", ` + etag, http.StatusNotModified},
		{"weak form", "W/" + etag, http.StatusNotModified},
		{"star", "*", http.StatusNotModified},
		{"other", `"0123"`, http.StatusOK},
		{"unquoted", strings.Trim(etag, `"`), http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, m := range []string{http.MethodGet, http.MethodHead} {
				w := serve(h, m, "/api/voice-agent/client.js", map[string]string{"If-None-Match": tc.ifNoneMatch})
				assert.Equal(t, tc.want, w.Code, m)
				assert.Equal(t, etag, w.Header().Get("ETag"), m)
				assert.Equal(t, "no-cache", w.Header().Get("Cache-Control"), m)
				if tc.want == http.StatusNotModified || m == http.MethodHead {
					assert.Empty(t, w.Body.Bytes(), m)
				}
			}
		})
	}
}

func TestClientScriptMethods(t *testing.T) {
	h := newScriptHandler(t)
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodOptions, http.MethodPatch} {
		w := serve(h, m, "/api/voice-agent/client.js", map[string]string{"Origin": testOrigin})
		assert.Equal(t, http.StatusMethodNotAllowed, w.Code, m)
		assert.Equal(t, "GET, HEAD", w.Header().Get("Allow"), m)
		assert.Equal(t, realtimeauth.CodeMethodNotAllowed, errorCode(t, w), m)
	}
}

func TestClientScriptCORS(t *testing.T) {
	h := newScriptHandler(t)

	w := serve(h, http.MethodGet, "/api/voice-agent/client.js", map[string]string{"Origin": testOrigin})
	require.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, testOrigin, w.Header().Get("Access-Control-Allow-Origin"))
	assert.Empty(t, w.Header().Get("Access-Control-Allow-Credentials"))
	assert.Equal(t, "Origin", w.Header().Get("Vary"))

	for _, o := range []string{"https://evil.example", "null", "https://app.example.com.evil.example"} {
		w = serve(h, http.MethodGet, "/api/voice-agent/client.js", map[string]string{"Origin": o})
		assert.Equal(t, http.StatusForbidden, w.Code, o)
		assert.Equal(t, realtimeauth.CodeOriginNotAllowed, errorCode(t, w), o)
		assert.Empty(t, w.Header().Get("Access-Control-Allow-Origin"), o)
		assert.Equal(t, "Origin", w.Header().Get("Vary"), o)
	}

	// Refused script loads are no strikes: a strict guard still serves.
	strict := newScriptHandler(t, realtimeauth.WithAbuseGuard(mustGuard(1, time.Minute, time.Minute)))
	for range 3 {
		w = serve(strict, http.MethodGet, "/api/voice-agent/client.js", map[string]string{"Origin": "https://evil.example"})
		assert.Equal(t, http.StatusForbidden, w.Code)
		assert.Equal(t, realtimeauth.CodeOriginNotAllowed, errorCode(t, w))
	}
	assert.Equal(t, http.StatusOK, serve(strict, http.MethodGet, "/api/voice-agent/client.js", nil).Code)
}

func TestClientScriptCredentials(t *testing.T) {
	h := newScriptHandler(t, realtimeauth.WithAllowCredentials(true))
	w := serve(h, http.MethodGet, "/api/voice-agent/client.js", map[string]string{"Origin": testOrigin})
	require.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, testOrigin, w.Header().Get("Access-Control-Allow-Origin"))
	assert.Equal(t, "true", w.Header().Get("Access-Control-Allow-Credentials"))
}

func TestClientScriptBlockedClient(t *testing.T) {
	h := newScriptHandler(t, realtimeauth.WithAbuseGuard(mustGuard(1, time.Minute, time.Minute)))
	// One malformed token request earns the strike that blocks.
	r := httptest.NewRequest(http.MethodPost, "/api/voice-agent/token", strings.NewReader("{"))
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	require.Equal(t, http.StatusBadRequest, w.Code)

	w = serve(h, http.MethodGet, "/api/voice-agent/client.js", map[string]string{"Origin": testOrigin})
	assert.Equal(t, http.StatusForbidden, w.Code)
	assert.Equal(t, realtimeauth.CodeBlocked, errorCode(t, w))
	assert.NotEmpty(t, w.Header().Get("Retry-After"))
	assert.Empty(t, w.Header().Get("Access-Control-Allow-Origin"))
}

func TestClientScriptTLS(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "https://app.example.com/api/voice-agent/client.js", nil)
	r.TLS = &tls.ConnectionState{}
	w := httptest.NewRecorder()
	newScriptHandler(t).ServeHTTP(w, r)
	require.Equal(t, http.StatusOK, w.Code)
	assert.NotEmpty(t, w.Header().Get("Strict-Transport-Security"))
}

func TestClientScriptBasePath(t *testing.T) {
	h := newScriptHandler(t, realtimeauth.WithBasePath("/rt"))
	assert.Equal(t, http.StatusOK, serve(h, http.MethodGet, "/rt/client.js", nil).Code)
	assert.Equal(t, http.StatusNotFound, serve(h, http.MethodGet, "/api/voice-agent/client.js", nil).Code)
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	require.NoError(t, json.Unmarshal([]byte(s), &n), s)
	return n
}

package main

import (
	"crypto/sha256"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/realtimeauth/realtimeauth"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func demoMux() *http.ServeMux {
	mux := http.NewServeMux()
	registerDemo(mux, slog.New(slog.NewTextHandler(io.Discard, nil)), nil, []string{"http://localhost:4321"})
	return mux
}

func TestDemoPage(t *testing.T) {
	w := httptest.NewRecorder()
	demoMux().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
	require.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, "text/html; charset=utf-8", w.Header().Get("Content-Type"))
	page := w.Body.String()

	// The import map pins the client to its SRI hash, and the CSP admits
	// exactly that inline script by its own hash.
	m := regexp.MustCompile(`<script type="importmap">(.*?)</script>`).FindStringSubmatch(page)
	require.NotNil(t, m, page)
	assert.Contains(t, m[1], realtimeauth.ClientScriptIntegrity())
	sum := sha256.Sum256([]byte(m[1]))
	csp := w.Header().Get("Content-Security-Policy")
	assert.Contains(t, csp, "script-src 'self' 'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'")
	assert.Contains(t, csp, "connect-src 'self' https://api.openai.com")
	assert.Contains(t, csp, "default-src 'none'")
	assert.Contains(t, csp, "frame-ancestors 'none'")
	assert.Contains(t, page, `<script type="module" src="/demo.js"></script>`)
	assert.NotContains(t, page, "{{IMPORTMAP}}")
	assert.Equal(t, "nosniff", w.Header().Get("X-Content-Type-Options"))
	assert.Equal(t, "microphone=(self)", w.Header().Get("Permissions-Policy"))
}

func TestDemoAssets(t *testing.T) {
	mux := demoMux()
	for path, ct := range map[string]string{
		"/demo.js":  "text/javascript; charset=utf-8",
		"/demo.css": "text/css; charset=utf-8",
	} {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		require.Equal(t, http.StatusOK, w.Code, path)
		assert.Equal(t, ct, w.Header().Get("Content-Type"), path)
		assert.NotEmpty(t, w.Body.Bytes(), path)

		w = httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest(http.MethodHead, path, nil))
		assert.Equal(t, http.StatusOK, w.Code, path)
		assert.Empty(t, w.Body.Bytes(), path)
	}
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/demo.js", nil))
	assert.True(t, strings.Contains(w.Body.String(), `from "/api/voice-agent/client.js"`), "the demo imports the served client")
}

func TestDemoRefusals(t *testing.T) {
	mux := demoMux()
	for _, tc := range []struct{ method, path string }{
		{http.MethodPost, "/"},
		{http.MethodDelete, "/demo.js"},
	} {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest(tc.method, tc.path, nil))
		assert.Equal(t, http.StatusMethodNotAllowed, w.Code, tc.method+" "+tc.path)
	}
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/nothing-here", nil))
	assert.Equal(t, http.StatusNotFound, w.Code)
}

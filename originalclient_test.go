package realtimeauth_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/realtimeauthtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// originalClient plays the original TypeScript service's token manager
// (features/voice-agent/services/tokenManager.ts) as a browser runs it on
// the page origin pageOrigin against the service at baseURL: every request
// it makes, with the headers it sets, the preflight the browser adds for a
// cross-origin request with Content-Type: application/json, and only the
// fields it reads. Its assertions are what that client needs.
type originalClient struct {
	t          *testing.T
	baseURL    string
	pageOrigin string
	http       *http.Client
}

// fetch is the browser's fetch: a preflight first (the client always sets
// Content-Type: application/json, which is not a simple header), then the
// request; a response the page may not read (no Access-Control-Allow-Origin
// for it) is a TypeError, as in the browser.
func (c *originalClient) fetch(method, path string, body any) (int, map[string]any) {
	c.t.Helper()
	url := c.baseURL + "/api/voice-agent" + path
	pre, err := http.NewRequest(http.MethodOptions, url, nil)
	require.NoError(c.t, err)
	pre.Header.Set("Origin", c.pageOrigin)
	pre.Header.Set("Access-Control-Request-Method", method)
	pre.Header.Set("Access-Control-Request-Headers", "content-type")
	res, err := c.http.Do(pre)
	require.NoError(c.t, err)
	res.Body.Close()
	require.Equal(c.t, http.StatusNoContent, res.StatusCode, "preflight of %s %s", method, path)
	require.Equal(c.t, c.pageOrigin, res.Header.Get("Access-Control-Allow-Origin"), "preflight of %s %s", method, path)
	require.Contains(c.t, res.Header.Get("Access-Control-Allow-Methods"), method)
	require.Equal(c.t, "content-type", strings.ToLower(res.Header.Get("Access-Control-Allow-Headers")))

	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(c.t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	require.NoError(c.t, err)
	req.Header.Set("Origin", c.pageOrigin)
	req.Header.Set("Content-Type", "application/json")
	res, err = c.http.Do(req)
	require.NoError(c.t, err)
	defer res.Body.Close()
	require.Equal(c.t, c.pageOrigin, res.Header.Get("Access-Control-Allow-Origin"), "%s %s: readable by the page", method, path)
	var m map[string]any
	require.NoError(c.t, json.NewDecoder(res.Body).Decode(&m), "%s %s: response.json()", method, path)
	return res.StatusCode, m
}

// checkCompatibility returns the mode the client settles on.
func (c *originalClient) checkCompatibility() string {
	c.t.Helper()
	status, m := c.fetch(http.MethodGet, "/compatibility", nil)
	require.True(c.t, status >= 200 && status < 300, "response.ok, or the client falls back to demo")
	features, _ := m["features"].(map[string]any)
	switch {
	case features["realtimeVoice"] == true && m["tier"] == "realtime":
		return "realtime"
	case features["chatCompletion"] == true && features["textToSpeech"] == true:
		return "fallback"
	}
	return "demo"
}

// token is what the client keeps of a token answer.
type token struct {
	token, sessionID, mode, model string
	expiresAt                     float64
}

// readToken reads a token or refresh answer as the client does.
func (c *originalClient) readToken(status int, m map[string]any, what string) token {
	c.t.Helper()
	require.True(c.t, status >= 200 && status < 300, "%s: response.ok: %v", what, m)
	require.Equal(c.t, true, m["success"], what)
	tok, _ := m["token"].(string)
	require.NotEmpty(c.t, tok, what)
	exp, ok := m["expiresAt"].(float64)
	require.True(c.t, ok, "%s: expiresAt is a number (ms)", what)
	sid, ok := m["sessionId"].(string)
	require.True(c.t, ok && sid != "", "%s: sessionId", what)
	if w, ok := m["warnings"]; ok {
		_, isList := w.([]any)
		assert.True(c.t, isList, "%s: warnings, if any, a list", what)
	}
	mode, _ := m["mode"].(string)
	model, _ := m["model"].(string) // not the original's: for a page's Agents SDK
	return token{token: tok, sessionID: sid, mode: mode, model: model, expiresAt: exp}
}

func (c *originalClient) requestToken() token {
	c.t.Helper()
	status, m := c.fetch(http.MethodPost, "/token", map[string]string{"model": "gpt-4o-realtime-preview-2024-10-01"})
	return c.readToken(status, m, "token")
}

func (c *originalClient) refreshToken(sessionID string) token {
	c.t.Helper()
	status, m := c.fetch(http.MethodPost, "/refresh-token", map[string]string{"sessionId": sessionID})
	return c.readToken(status, m, "refresh")
}

// failure is a refused request as the client sees it: !response.ok, and
// the message it throws is errorData.error.
func (c *originalClient) failure(method, path string, body any) (int, string) {
	c.t.Helper()
	status, m := c.fetch(method, path, body)
	require.False(c.t, status >= 200 && status < 300, "%s %s should fail", method, path)
	msg, ok := m["error"].(string)
	require.True(c.t, ok && msg != "", "%s %s: errorData.error is the message the client throws: %v", method, path, m)
	assert.Equal(c.t, false, m["success"])
	return status, msg
}

// TestOriginalClient plays the original service's client against the
// handler with a real OpenAI minter and a fake OpenAI: compatibility first,
// a token with its {"model":…} body, the refresh it schedules 30 s before
// expiry, and the refusals whose error strings it shows.
func TestOriginalClient(t *testing.T) {
	clock := realtimeauthtest.NewClock(t0)
	var upstreamCalls atomic.Int32
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstreamCalls.Add(1)
		var body struct {
			Session struct{ Model string } `json:"session"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"value":"ek_%d","expires_at":%d,"session":{"type":"realtime","model":%q}}`,
			upstreamCalls.Load(), clock.Now().Add(time.Minute).Unix(), body.Session.Model)
	}))
	defer upstream.Close()
	minter, err := realtimeauth.NewOpenAIMinter("sk-test", realtimeauth.OpenAIConfig{
		BaseURL: upstream.URL + "/v1",
		Clock:   clock.Now,
	})
	require.NoError(t, err)
	const page = "https://app.example.com"
	h, err := realtimeauth.New(minter, realtimeauth.WithAllowedOrigins(page), realtimeauth.WithClock(clock.Now),
		realtimeauth.WithLogger(quietLogger()))
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	defer srv.Close()
	c := &originalClient{t: t, baseURL: srv.URL, pageOrigin: page, http: srv.Client()}

	assert.Equal(t, "realtime", c.checkCompatibility())
	assert.Zero(t, upstreamCalls.Load(), "compatibility costs no upstream call")

	first := c.requestToken()
	assert.Equal(t, "realtime", first.mode, "the client keeps its realtime mode")
	assert.Equal(t, "gpt-realtime", first.model, "the server's model, not the body's")
	assert.Equal(t, float64(clock.Now().Add(time.Minute).Unix()*1000), first.expiresAt, "expiresAt in ms")
	assert.Equal(t, int32(1), upstreamCalls.Load())

	// The client refreshes refreshThresholdSeconds (30) before expiry.
	clock.Advance(time.Duration(first.expiresAt-float64(clock.Now().UnixMilli()))*time.Millisecond - 30*time.Second)
	second := c.refreshToken(first.sessionID)
	assert.Equal(t, first.sessionID, second.sessionID, "the same session")
	assert.NotEqual(t, first.token, second.token)
	assert.Greater(t, second.expiresAt, first.expiresAt)
	assert.Equal(t, "realtime", second.mode)
	assert.Equal(t, "gpt-realtime", second.model)

	// Refusals: each one's error string is what the client throws.
	_, msg := c.failure(http.MethodPost, "/refresh-token", map[string]string{"sessionId": second.sessionID})
	assert.Contains(t, msg, "too soon")
	_, msg = c.failure(http.MethodPost, "/refresh-token", map[string]string{"sessionId": "session_1640995140_abc123"})
	assert.Contains(t, msg, "sessionId")
	for range 9 {
		c.requestToken()
	}
	status, msg := c.failure(http.MethodPost, "/token", map[string]string{"model": "gpt-4o-realtime-preview-2024-10-01"})
	assert.Equal(t, http.StatusTooManyRequests, status)
	assert.Contains(t, msg, "try again later")
}

// TestOriginalClientDevMode: with the dev minter the client settles on its
// demo mode, from compatibility and from the token's mode alike.
func TestOriginalClientDevMode(t *testing.T) {
	const page = "https://app.example.com"
	h, err := realtimeauth.New(realtimeauth.NewDevMinter(nil), realtimeauth.WithAllowedOrigins(page), realtimeauth.WithLogger(quietLogger()))
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	defer srv.Close()
	c := &originalClient{t: t, baseURL: srv.URL, pageOrigin: page, http: srv.Client()}
	assert.Equal(t, "demo", c.checkCompatibility())
	tok := c.requestToken()
	assert.Equal(t, "demo", tok.mode)
	assert.True(t, strings.HasPrefix(tok.token, "ek_dev_"))
}

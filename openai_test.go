package realtimeauth_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const fakeKey = "sk-proj-TESTKEY-abcdef0123456789"

// upstream is a fake OpenAI: it records requests and answers with answer.
type upstream struct {
	srv    *httptest.Server
	mu     sync.Mutex
	reqs   []*http.Request
	bodies [][]byte
	answer func(w http.ResponseWriter, r *http.Request)
}

func newUpstream(t *testing.T, answer func(w http.ResponseWriter, r *http.Request)) *upstream {
	t.Helper()
	u := &upstream{answer: answer}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.reqs = append(u.reqs, r)
		u.bodies = append(u.bodies, b)
		a := u.answer
		u.mu.Unlock()
		a(w, r)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) last(t *testing.T) (*http.Request, map[string]any) {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	require.NotEmpty(t, u.reqs)
	var body map[string]any
	require.NoError(t, json.Unmarshal(u.bodies[len(u.bodies)-1], &body))
	return u.reqs[len(u.reqs)-1], body
}

// okAnswer answers like OpenAI's client_secrets endpoint.
func okAnswer(value string, expires time.Time) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"value":%q,"expires_at":%d,"session":{"type":"realtime","model":"gpt-realtime"}}`, value, expires.Unix())
	}
}

func jsonAnswer(status int, body string, hdr ...string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(hdr); i += 2 {
			w.Header().Set(hdr[i], hdr[i+1])
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

func TestOpenAIRequestShape(t *testing.T) {
	exp := time.Now().Add(time.Minute).Truncate(time.Second)
	u := newUpstream(t, okAnswer("ek_real_1", exp))
	m, err := realtimeauth.NewOpenAIMinter(fakeKey, realtimeauth.OpenAIConfig{
		BaseURL: u.srv.URL + "/v1/",
		Model:   "gpt-realtime-mini",
		Session: json.RawMessage(`{"instructions":"be brief","voice":"alloy","audio":{"output":{"speed":1}}}`),
	})
	require.NoError(t, err)
	assert.Equal(t, u.srv.URL+"/v1/realtime/client_secrets", realtimeauth.MinterEndpoint(m))
	assert.Equal(t, "gpt-realtime-mini", realtimeauth.MinterModel(m))

	tok, err := m.Mint(context.Background(), realtimeauth.MintRequest{
		SessionID: "s", TTL: 90 * time.Second,
		Session: json.RawMessage(`{"voice":"verse","tools":[]}`),
	})
	require.NoError(t, err)
	assert.Equal(t, realtimeauth.Token{Value: "ek_real_1", ExpiresAt: time.Unix(exp.Unix(), 0), Model: "gpt-realtime-mini"}, tok)

	r, body := u.last(t)
	assert.Equal(t, http.MethodPost, r.Method)
	assert.Equal(t, "/v1/realtime/client_secrets", r.URL.Path)
	assert.Equal(t, "Bearer "+fakeKey, r.Header.Get("Authorization"))
	assert.Empty(t, r.Header.Get("api-key"))
	assert.Equal(t, "application/json", r.Header.Get("Content-Type"))
	assert.Equal(t, map[string]any{
		"expires_after": map[string]any{"anchor": "created_at", "seconds": float64(90)},
		"session": map[string]any{
			"type": "realtime", "model": "gpt-realtime-mini",
			"instructions": "be brief", "voice": "verse", "tools": []any{},
			"audio": map[string]any{"output": map[string]any{"speed": float64(1)}},
		},
	}, body)

	// Without a template or a per-request session: type and model only.
	m, err = realtimeauth.NewOpenAIMinter(fakeKey, realtimeauth.OpenAIConfig{BaseURL: u.srv.URL})
	require.NoError(t, err)
	_, err = m.Mint(context.Background(), realtimeauth.MintRequest{TTL: time.Minute})
	require.NoError(t, err)
	_, body = u.last(t)
	assert.Equal(t, map[string]any{"type": "realtime", "model": "gpt-realtime"}, body["session"])
	assert.Equal(t, float64(60), body["expires_after"].(map[string]any)["seconds"])

	// A per-request session cannot change type or model.
	_, err = m.Mint(context.Background(), realtimeauth.MintRequest{TTL: time.Minute, Session: json.RawMessage(`{"model":"gpt-4o","type":"transcription"}`)})
	require.NoError(t, err)
	_, body = u.last(t)
	assert.Equal(t, map[string]any{"type": "realtime", "model": "gpt-realtime"}, body["session"])

	_, err = m.Mint(context.Background(), realtimeauth.MintRequest{TTL: time.Minute, Session: json.RawMessage(`[1]`)})
	assert.Error(t, err, "MintRequest.Session must be an object")
}

func TestOpenAIDefaults(t *testing.T) {
	m, err := realtimeauth.NewOpenAIMinter(fakeKey, realtimeauth.OpenAIConfig{})
	require.NoError(t, err)
	assert.Equal(t, "https://api.openai.com/v1/realtime/client_secrets", realtimeauth.MinterEndpoint(m))
	assert.Equal(t, "gpt-realtime", realtimeauth.MinterModel(m))

	az, err := realtimeauth.NewOpenAIMinter(fakeKey, realtimeauth.OpenAIConfig{
		AzureResource: "My-Resource",
		Model:         "voice-deploy",
	})
	require.NoError(t, err)
	assert.Equal(t, "https://my-resource.openai.azure.com/openai/v1/realtime/client_secrets", realtimeauth.MinterEndpoint(az))
	assert.Equal(t, "voice-deploy", realtimeauth.MinterModel(az))
}

func TestOpenAIAzure(t *testing.T) {
	exp := time.Now().Add(time.Minute)
	u := newUpstream(t, okAnswer("ek_az", exp))
	m, err := realtimeauth.NewOpenAIMinter(fakeKey, realtimeauth.OpenAIConfig{
		AzureResource: "res",
		Model:         "my-deployment",
		BaseURL:       u.srv.URL + "/openai/v1",
	})
	require.NoError(t, err)
	tok, err := m.Mint(context.Background(), realtimeauth.MintRequest{TTL: time.Minute})
	require.NoError(t, err)
	assert.Equal(t, "ek_az", tok.Value)
	r, body := u.last(t)
	assert.Equal(t, "/openai/v1/realtime/client_secrets", r.URL.Path)
	assert.Equal(t, fakeKey, r.Header.Get("api-key"))
	assert.Empty(t, r.Header.Get("Authorization"))
	assert.Equal(t, "my-deployment", body["session"].(map[string]any)["model"])
}

// TestOpenAIFailures maps every failure to an *UpstreamError, with the upstream's message (redacted) kept for logs only.
func TestOpenAIFailures(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name       string
		answer     func(http.ResponseWriter, *http.Request)
		maxBody    int64
		status     int
		retryAfter time.Duration
		msg        string // a substring of UpstreamError.Message
		requestID  string
	}{
		{name: "400 with the key in the message", status: 400, msg: "Invalid value",
			answer:    jsonAnswer(400, `{"error":{"message":"Invalid value for key `+fakeKey+`","code":"invalid_value"}}`, "x-request-id", "req_123"),
			requestID: "req_123"},
		{name: "401", status: 401, msg: "Incorrect API key",
			answer: jsonAnswer(401, `{"error":{"message":"Incorrect API key provided: `+fakeKey+`"}}`)},
		{name: "403", status: 403, answer: jsonAnswer(403, `{"error":{"message":"region"}}`), msg: "region"},
		{name: "500", status: 500, answer: jsonAnswer(500, `{"error":{"message":"server error"}}`)},
		{name: "503 plain text", status: 503, answer: jsonAnswer(503, `upstream connect error`)},
		{name: "429 Retry-After", status: 429, retryAfter: 30 * time.Second,
			answer: jsonAnswer(429, `{"error":{"message":"Rate limit reached"}}`, "Retry-After", "30")},
		{name: "429 retry-after-ms", status: 429, retryAfter: 20 * time.Second,
			answer: jsonAnswer(429, `{"error":{"message":"Rate limit reached"}}`, "retry-after-ms", "20000")},
		{name: "malformed JSON", status: 200, msg: "malformed", answer: jsonAnswer(200, `{"value":`)},
		{name: "HTML", status: 200, msg: "malformed", answer: jsonAnswer(200, `<html>oops</html>`)},
		{name: "missing value", status: 200, msg: "value", answer: jsonAnswer(200, fmt.Sprintf(`{"expires_at":%d}`, now.Add(time.Minute).Unix()))},
		{name: "missing expires_at", status: 200, msg: "expires_at", answer: jsonAnswer(200, `{"value":"ek_1"}`)},
		{name: "expires_at in the past", status: 200, msg: "expires_at",
			answer: jsonAnswer(200, fmt.Sprintf(`{"value":"ek_1","expires_at":%d}`, now.Add(-time.Second).Unix()))},
		{name: "body over the cap", status: 200, maxBody: 1024, msg: "larger",
			answer: jsonAnswer(200, fmt.Sprintf(`{"value":"ek_1","expires_at":%d,"pad":"%s"}`, now.Add(time.Minute).Unix(), strings.Repeat("x", 2000)))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := newUpstream(t, tc.answer)
			m, err := realtimeauth.NewOpenAIMinter(fakeKey, realtimeauth.OpenAIConfig{
				BaseURL:         u.srv.URL,
				MaxUpstreamBody: tc.maxBody,
			})
			require.NoError(t, err)
			// Room for retries of 5xx answers, not for a 20s Retry-After.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			tok, err := m.Mint(ctx, realtimeauth.MintRequest{TTL: time.Minute})
			require.Error(t, err)
			assert.Zero(t, tok)
			var ue *realtimeauth.UpstreamError
			require.ErrorAs(t, err, &ue)
			assert.Equal(t, tc.status, ue.StatusCode)
			assert.Equal(t, tc.retryAfter, ue.RetryAfter)
			assert.Contains(t, ue.Message, tc.msg)
			assert.Equal(t, tc.requestID, ue.RequestID)
			assert.NotContains(t, ue.Message, fakeKey)
			assert.NotContains(t, err.Error(), fakeKey)
			assert.GreaterOrEqual(t, ue.Attempts, 1)
		})
	}
}

func TestOpenAIConnectionFailures(t *testing.T) {
	// Nothing listens: a connection error, without a status.
	u := newUpstream(t, okAnswer("x", time.Now()))
	url := u.srv.URL
	u.srv.Close()
	m, err := realtimeauth.NewOpenAIMinter(fakeKey, realtimeauth.OpenAIConfig{BaseURL: url})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = m.Mint(ctx, realtimeauth.MintRequest{TTL: time.Minute})
	var ue *realtimeauth.UpstreamError
	require.ErrorAs(t, err, &ue)
	assert.Zero(t, ue.StatusCode)
	assert.NotContains(t, err.Error(), fakeKey)

	// A deadline is recognisable as one.
	release := make(chan struct{})
	slow := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	m, err = realtimeauth.NewOpenAIMinter(fakeKey, realtimeauth.OpenAIConfig{BaseURL: slow.srv.URL})
	require.NoError(t, err)
	ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = m.Mint(ctx, realtimeauth.MintRequest{TTL: time.Minute})
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorAs(t, err, &ue)
}

func TestOpenAIConfigErrors(t *testing.T) {
	type cfg = realtimeauth.OpenAIConfig
	tests := []struct {
		name string
		key  string
		cfg  cfg
		want string
	}{
		{"empty key", "  ", cfg{}, "empty API key"},
		{"key with a space", "sk-a b", cfg{}, "API key"},
		{"key with a newline", "sk-a\nb", cfg{}, "API key"},
		{"relative base URL", fakeKey, cfg{BaseURL: "/v1"}, "OpenAIConfig.BaseURL"},
		{"ftp base URL", fakeKey, cfg{BaseURL: "ftp://x/v1"}, "OpenAIConfig.BaseURL"},
		{"base URL with query", fakeKey, cfg{BaseURL: "https://x/v1?a=b"}, "OpenAIConfig.BaseURL"},
		{"base URL with credentials", fakeKey, cfg{BaseURL: "https://u:p@x/v1"}, "OpenAIConfig.BaseURL"},
		{"Azure resource", fakeKey, cfg{AzureResource: "bad.res", Model: "d"}, "OpenAIConfig.AzureResource"},
		{"Azure deployment", fakeKey, cfg{AzureResource: "res"}, "OpenAIConfig.Model"},
		{"body cap low", fakeKey, cfg{MaxUpstreamBody: 100}, "OpenAIConfig.MaxUpstreamBody"},
		{"body cap negative", fakeKey, cfg{MaxUpstreamBody: -1}, "OpenAIConfig.MaxUpstreamBody"},
		{"body cap high", fakeKey, cfg{MaxUpstreamBody: 1 << 30}, "OpenAIConfig.MaxUpstreamBody"},
		{"template not an object", fakeKey, cfg{Session: json.RawMessage(`[]`)}, "OpenAIConfig.Session"},
		{"template not JSON", fakeKey, cfg{Session: json.RawMessage(`{`)}, "OpenAIConfig.Session"},
		{"template sets model", fakeKey, cfg{Session: json.RawMessage(`{"model":"x"}`)}, "OpenAIConfig.Session"},
		{"template sets type", fakeKey, cfg{Session: json.RawMessage(`{"type":"x"}`)}, "OpenAIConfig.Session"},
		{"client and wrapper", fakeKey, cfg{HTTPClient: http.DefaultClient, WrapTransport: func(rt http.RoundTripper) http.RoundTripper { return rt }}, "OpenAIConfig.WrapTransport"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := realtimeauth.NewOpenAIMinter(tc.key, tc.cfg)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), fakeKey)
		})
	}
}

// TestHandlerWithOpenAIMinter runs the handler against a fake OpenAI: each
// upstream answer maps to its row of the error table, and nothing the
// upstream said reaches the client.
func TestHandlerWithOpenAIMinter(t *testing.T) {
	tests := []struct {
		name   string
		answer func(http.ResponseWriter, *http.Request)
		status int
		code   realtimeauth.Code
		retry  int
	}{
		{"ok", okAnswer("ek_live_1", time.Now().Add(time.Minute)), 200, "", 0},
		{"500", jsonAnswer(500, `{"error":{"message":"boom `+fakeKey+`"}}`), 502, "upstream_error", 0},
		{"401", jsonAnswer(401, `{"error":{"message":"Incorrect API key provided: `+fakeKey+`"}}`), 502, "upstream_error", 0},
		{"403", jsonAnswer(403, `{"error":{"message":"forbidden `+fakeKey+`"}}`), 502, "upstream_error", 0},
		{"malformed", jsonAnswer(200, `{"value":"ek_`), 502, "upstream_error", 0},
		{"429", jsonAnswer(429, `{"error":{"message":"slow down `+fakeKey+`"}}`, "Retry-After", "30"), 503, "upstream_rate_limited", 30},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := newUpstream(t, tc.answer)
			m, err := realtimeauth.NewOpenAIMinter(fakeKey, realtimeauth.OpenAIConfig{BaseURL: u.srv.URL})
			require.NoError(t, err)
			logs := &syncBuffer{}
			h, err := realtimeauth.New(m, realtimeauth.WithLogger(newTextLogger(logs)), realtimeauth.WithLimits(realtimeauth.Limits{UpstreamTimeout: 10 * time.Second}))
			require.NoError(t, err)
			w := serveReq(h, req{path: tokenURL})
			assert.NotContains(t, w.Body.String(), fakeKey)
			assert.NotContains(t, logs.String(), fakeKey)
			if tc.status == 200 {
				require.Equal(t, 200, w.Code, w.Body.String())
				assert.Equal(t, "ek_live_1", jsonBody(t, w.Body.Bytes())["token"])
				return
			}
			assertError(t, w, tc.status, tc.code, tc.retry)
			for _, s := range []string{"boom", "Incorrect", "slow down", "forbidden "} {
				assert.NotContains(t, w.Body.String(), s)
			}
			assert.Contains(t, logs.String(), "event=upstream_error", "the failure is logged")
		})
	}
}

// TestOpenAIRedactsBeforeCutting: a key that straddles the point where
// the upstream message is cut leaves no prefix of itself behind.
func TestOpenAIRedactsBeforeCutting(t *testing.T) {
	for pad := 280; pad < 300; pad++ {
		msg := strings.Repeat("x", pad) + fakeKey + " tail"
		u := newUpstream(t, jsonAnswer(401, `{"error":{"message":"`+msg+`"}}`))
		m, err := realtimeauth.NewOpenAIMinter(fakeKey, realtimeauth.OpenAIConfig{BaseURL: u.srv.URL})
		require.NoError(t, err)
		_, err = m.Mint(context.Background(), realtimeauth.MintRequest{TTL: time.Minute})
		var ue *realtimeauth.UpstreamError
		require.ErrorAs(t, err, &ue)
		assert.NotContains(t, ue.Message, fakeKey[:10], "pad %d", pad)
	}
}

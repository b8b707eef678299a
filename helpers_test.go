package realtimeauth_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/realtimeauthtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// t0 is the fake clock's start: a fixed instant, on a whole second.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const (
	base     = "/api/voice-agent"
	tokenURL = base + "/token"
	refrURL  = base + "/refresh-token"
	healthU  = base + "/health"
	origin   = "https://app.example.com"
)

// rig is a handler under test with its fake clock and fake minter.
type rig struct {
	h     *realtimeauth.Handler
	clock *realtimeauthtest.Clock
	mint  *realtimeauthtest.Minter
}

// newRig builds a handler on a fake clock with a fake minter; the
// allowed origin is origin unless opts add more.
func newRig(t *testing.T, opts ...realtimeauth.Option) *rig {
	t.Helper()
	clock := realtimeauthtest.NewClock(t0)
	m := &realtimeauthtest.Minter{Now: clock.Now}
	all := append([]realtimeauth.Option{
		realtimeauth.WithClock(clock.Now),
		realtimeauth.WithAllowedOrigins(origin),
		realtimeauth.WithLogger(quietLogger()),
	}, opts...)
	h, err := realtimeauth.New(m, all...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Close() })
	return &rig{h: h, clock: clock, mint: m}
}

// req describes one request to the handler.
type req struct {
	method  string
	path    string
	body    string
	ct      string // Content-Type; "application/json" when body is set and ct empty
	remote  string // RemoteAddr; "203.0.113.7:5555" when empty
	headers map[string]string
}

const defaultRemote = "203.0.113.7:5555"

func (q req) build() *http.Request {
	method := q.method
	if method == "" {
		method = http.MethodPost
	}
	var body io.Reader
	if q.body != "" {
		body = strings.NewReader(q.body)
	}
	r := httptest.NewRequest(method, q.path, body)
	if q.body != "" {
		ct := q.ct
		if ct == "" {
			ct = "application/json"
		}
		r.Header.Set("Content-Type", ct)
	}
	r.RemoteAddr = defaultRemote
	if q.remote != "" {
		r.RemoteAddr = q.remote
	}
	for k, v := range q.headers {
		r.Header.Set(k, v)
	}
	return r
}

// serve runs q through h in memory.
func serveReq(h http.Handler, q req) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, q.build())
	return w
}

// jsonBody decodes a response body into a map.
func jsonBody(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m), "body %q", b)
	return m
}

// issueToken gets a token from h for remote and returns the body.
func issueToken(t *testing.T, h http.Handler, remote string) map[string]any {
	t.Helper()
	w := serveReq(h, req{path: tokenURL, remote: remote})
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	return jsonBody(t, w.Body.Bytes())
}

func refreshBody(id string) string { return `{"sessionId":"` + id + `"}` }

// assertError checks an error answer: status, code, the error shape and,
// when retry > 0, Retry-After and retryAfter in whole seconds.
func assertError(t *testing.T, w *httptest.ResponseRecorder, status int, code string, retry int) {
	t.Helper()
	assert.Equal(t, status, w.Code, w.Body.String())
	m := jsonBody(t, w.Body.Bytes())
	assert.Equal(t, false, m["success"])
	assert.Equal(t, code, m["code"])
	msg, _ := m["error"].(string)
	assert.NotEmpty(t, msg, "error must be a non-empty string")
	if retry > 0 {
		assert.Equal(t, itoa(retry), w.Header().Get("Retry-After"))
		assert.Equal(t, float64(retry), m["retryAfter"])
	} else if retry == 0 {
		assert.Empty(t, w.Header().Get("Retry-After"))
		assert.NotContains(t, m, "retryAfter")
	}
	assertSecurityHeaders(t, w.Header(), false)
}

func itoa(n int) string { return strconv.Itoa(n) }

// assertSecurityHeaders checks the headers every JSON answer carries.
func assertSecurityHeaders(t *testing.T, hd http.Header, hsts bool) {
	t.Helper()
	assert.Equal(t, "application/json", hd.Get("Content-Type"))
	assert.Equal(t, "no-store", hd.Get("Cache-Control"))
	assert.Equal(t, "no-cache", hd.Get("Pragma"))
	assert.Equal(t, "nosniff", hd.Get("X-Content-Type-Options"))
	assert.Equal(t, "DENY", hd.Get("X-Frame-Options"))
	assert.Equal(t, "default-src 'none'; frame-ancestors 'none'", hd.Get("Content-Security-Policy"))
	assert.Equal(t, "no-referrer", hd.Get("Referrer-Policy"))
	if hsts {
		assert.Contains(t, hd.Get("Strict-Transport-Security"), "max-age=")
	} else {
		assert.Empty(t, hd.Get("Strict-Transport-Security"))
	}
}

// newTextLogger logs everything, debug included, to w.
func newTextLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// countingStore counts calls to the SessionStore it wraps, and can fail
// Count.
type countingStore struct {
	realtimeauth.SessionStore
	calls     atomic.Int64
	failCount atomic.Bool
}

var errBackend = errors.New("backend down")

func (s *countingStore) Open(ctx context.Context, req realtimeauth.OpenRequest) (realtimeauth.Session, []realtimeauth.Session, error) {
	s.calls.Add(1)
	return s.SessionStore.Open(ctx, req)
}

func (s *countingStore) Refresh(ctx context.Context, req realtimeauth.RefreshRequest) (realtimeauth.Session, error) {
	s.calls.Add(1)
	return s.SessionStore.Refresh(ctx, req)
}

func (s *countingStore) GiveBack(ctx context.Context, id string, issuedAt, restore time.Time) error {
	s.calls.Add(1)
	return s.SessionStore.GiveBack(ctx, id, issuedAt, restore)
}

func (s *countingStore) Delete(ctx context.Context, id string) error {
	s.calls.Add(1)
	return s.SessionStore.Delete(ctx, id)
}

func (s *countingStore) Count(ctx context.Context, now time.Time) (int, error) {
	if s.failCount.Load() {
		return 0, errBackend
	}
	return s.SessionStore.Count(ctx, now)
}

// tcpServer serves h on 127.0.0.1 over real TCP.
func tcpServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// clientFrom returns an HTTP client whose connections come from the
// loopback address ip (127.0.0.2, 127.0.0.3 … are distinct peers).
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}, Timeout: 10 * time.Second}
}

// post sends a POST over TCP and returns status, headers and the decoded body.
func post(t *testing.T, c *http.Client, url, body string, hdr map[string]string) (int, http.Header, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r, err := http.NewRequest(http.MethodPost, url, rd)
	require.NoError(t, err)
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	resp, err := c.Do(r)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, jsonBody(t, b)
}

// syncBuffer collects log output written from many goroutines.
type syncBuffer = realtimeauthtest.Buffer

// events collects the events a handler emits.
type events = realtimeauthtest.Events

package realtimeauth_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/realtimeauthtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// hostileRig is a handler on a real server configured as the example server
// is (read timeouts, a header cap), with state the hostile requests must
// leave alone: one session, one limiter key, one mint.
type hostileRig struct {
	srv     *httptest.Server
	minter  *realtimeauthtest.Minter
	store   realtimeauth.SessionStore
	session string
}

const hostileReadTimeout = 300 * time.Millisecond

func newHostileRig(t *testing.T) *hostileRig {
	t.Helper()
	rig := &hostileRig{
		minter: &realtimeauthtest.Minter{},
		store:  realtimeauth.NewMemoryStore(),
	}
	h, err := realtimeauth.New(rig.minter,
		realtimeauth.WithSessionStore(rig.store),
		realtimeauth.WithLimits(realtimeauth.Limits{Sessions: realtimeauth.Rate{N: 100, Per: time.Minute}}),
		realtimeauth.WithAllowedOrigins("https://app.example.com"),
		realtimeauth.WithTrustedProxies("127.0.0.1"),
		// Malformed requests earn strikes by design; a high threshold keeps
		// the table's rows from blocking each other.
		realtimeauth.WithAbuseGuard(mustGuard(1000, time.Minute, time.Minute)),
		realtimeauth.WithLogger(silentLogger()),
	)
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Close() })
	rig.srv = httptest.NewUnstartedServer(h)
	rig.srv.Config.ReadHeaderTimeout = hostileReadTimeout
	rig.srv.Config.ReadTimeout = hostileReadTimeout
	rig.srv.Config.MaxHeaderBytes = 64 << 10
	rig.srv.Config.ErrorLog = nil
	rig.srv.Start()
	t.Cleanup(rig.srv.Close)

	status, body := rig.raw(t, "POST /api/voice-agent/token HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 192.0.2.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", false)
	require.Equal(t, http.StatusOK, status, body)
	var tok struct{ SessionID string }
	require.NoError(t, json.Unmarshal([]byte(body), &tok))
	rig.session = tok.SessionID
	return rig
}

// raw sends a request as bytes, so that it can be anything, and returns the
// answer's status and body. With stall, the connection stays open after the
// bytes, as a client that never finishes its body.
func (rig *hostileRig) raw(t *testing.T, request string, stall bool) (int, string) {
	t.Helper()
	conn, err := net.Dial("tcp", rig.srv.Listener.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(5*time.Second)))
	_, err = io.WriteString(conn, request)
	require.NoError(t, err)
	if !stall {
		_ = conn.(*net.TCPConn).CloseWrite()
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// state is what a refused request must not change.
func (rig *hostileRig) state(t *testing.T) string {
	t.Helper()
	// A refresh that is always too soon reads the session without changing it.
	s, err := rig.store.Refresh(context.Background(), realtimeauth.RefreshRequest{
		Now: time.Now(), ID: rig.session, ClientIP: "192.0.2.1", MaxRefreshes: 1 << 30, MinInterval: 1 << 62,
	})
	require.ErrorIs(t, err, realtimeauth.ErrRefreshTooSoon)
	return fmt.Sprintf("sessions=%d mints=%d refreshes=%d lastIssued=%v",
		realtimeauth.MemoryLen(rig.store), rig.minter.Calls(), s.Refreshes, s.LastIssuedAt)
}

func request(method, path string, headers []string, body string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: x\r\n", method, path)
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	if body != "" || method == http.MethodPost {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("Connection: close\r\n\r\n")
	b.WriteString(body)
	return b.String()
}

const (
	tokenPath   = "/api/voice-agent/token"
	refreshPath = "/api/voice-agent/refresh-token"
	jsonCT      = "Content-Type: application/json"
)

// TestHostileRequests sends malformed and malicious requests through a real
// server and the whole handler: each gets a clear 4xx, and none changes a
// session, the limiter or reaches the minter.
func TestHostileRequests(t *testing.T) {
	checkGoroutines(t)
	rig := newHostileRig(t)
	before := rig.state(t)
	sid := rig.session
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	forged := strings.TrimSuffix(strings.Repeat("203.0.113.66, ", 2000), ", ")

	tests := []struct {
		name   string
		req    string
		stall  bool
		status int
		code   string // "" when net/http answers before the handler
	}{
		{"huge header over the server's cap", request("POST", tokenPath, []string{"X-Junk: " + strings.Repeat("a", 100<<10)}, ""), false, 431, ""},
		{"many headers over the cap", request("POST", tokenPath, repeatHeader("X-H", 5000), ""), false, 431, ""},
		{"large header under the cap, bad body", request("POST", tokenPath, []string{jsonCT, "Cookie: " + strings.Repeat("c", 40<<10)}, "{"), false, 400, "invalid_request"},
		{"huge X-Forwarded-For chain, bad body", request("POST", tokenPath, []string{jsonCT, "X-Forwarded-For: " + forged}, "[1]"), false, 400, "invalid_request"},
		{"many X-Forwarded-For lines, bad refresh", request("POST", refreshPath, append(repeatHeader("X-Forwarded-For", 1000), jsonCT), `{"sessionId":"x"}`), false, 400, "invalid_request"},
		{"X-Forwarded-For of garbage, bad body", request("POST", tokenPath, []string{jsonCT, "X-Forwarded-For: \xff\xfe, ::::, 999.1.1.1, " + strings.Repeat("z", 5000)}, "nope"), false, 400, "invalid_request"},
		{"invalid UTF-8 in the token body", request("POST", tokenPath, []string{jsonCT}, "{\"model\":\"\xff\xfe\"}"), false, 400, "invalid_request"},
		{"invalid UTF-8 in the sessionId", request("POST", refreshPath, []string{jsonCT}, "{\"sessionId\":\""+sid[:35]+"\xff\"}"), false, 400, "invalid_request"},
		{"invalid UTF-8 in the Origin", request("POST", tokenPath, []string{jsonCT, "Origin: https://\xffapp.example.com"}, "{}"), false, 403, "origin_not_allowed"},
		{"deep nesting in the token body", request("POST", tokenPath, []string{jsonCT}, `{"a":`+deep(20000)+`}`), false, 400, "invalid_request"},
		{"deep nesting in the refresh body", request("POST", refreshPath, []string{jsonCT}, `{"x":`+deep(20000)+`,"sessionId":"`+sid+`"}`), false, 400, "invalid_request"},
		{"duplicate sessionId keys", request("POST", refreshPath, []string{jsonCT}, `{"sessionId":"`+sid+`","sessionId":"`+sid+`"}`), false, 400, "invalid_request"},
		{"number for the sessionId", request("POST", refreshPath, []string{jsonCT}, `{"sessionId":12345}`), false, 400, "invalid_request"},
		{"object for the sessionId", request("POST", refreshPath, []string{jsonCT}, `{"sessionId":{"id":"`+sid+`"}}`), false, 400, "invalid_request"},
		{"array for the body", request("POST", refreshPath, []string{jsonCT}, `["`+sid+`"]`), false, 400, "invalid_request"},
		{"upper-case sessionId", request("POST", refreshPath, []string{jsonCT}, `{"sessionId":"`+strings.ToUpper(sid)+`"}`), false, 400, "invalid_request"},
		{"raw NUL in the body", request("POST", refreshPath, []string{jsonCT}, "{\"sessionId\":\""+sid+"\x00\"}"), false, 400, "invalid_request"},
		{"escaped NUL in the sessionId", request("POST", refreshPath, []string{jsonCT}, `{"sessionId":"`+sid[:35]+`\u0000"}`), false, 400, "invalid_request"},
		{"NUL in a header", request("POST", tokenPath, []string{jsonCT, "X-Evil: a\x00b"}, "{}"), false, 400, ""},
		{"text/plain body", request("POST", tokenPath, []string{"Content-Type: text/plain"}, "{}"), false, 415, "unsupported_media_type"},
		{"form body", request("POST", refreshPath, []string{"Content-Type: application/x-www-form-urlencoded"}, "sessionId="+sid), false, 415, "unsupported_media_type"},
		{"multipart body", request("POST", tokenPath, []string{"Content-Type: multipart/form-data; boundary=x"}, "--x--"), false, 415, "unsupported_media_type"},
		{"no content type", request("POST", refreshPath, nil, `{"sessionId":"`+sid+`"}`), false, 415, "unsupported_media_type"},
		{"JSON with a charset, bad body", request("POST", tokenPath, []string{"Content-Type: application/json; charset=utf-8"}, "{]"), false, 400, "invalid_request"},
		{"body over the cap", request("POST", tokenPath, []string{jsonCT}, `{"a":"`+strings.Repeat("x", 70<<10)+`"}`), false, 413, "payload_too_large"},
		{"chunked body over the cap", "POST " + tokenPath + " HTTP/1.1\r\nHost: x\r\n" + jsonCT + "\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" +
			strings.Repeat("4000\r\n"+strings.Repeat("x", 0x4000)+"\r\n", 5) + "0\r\n\r\n", false, 413, "payload_too_large"},
		// net/http lets the chunked framing win over Content-Length (RFC
		// 9112 6.3); the handler sees the chunked body.
		{"Content-Length and chunked both", "POST " + tokenPath + " HTTP/1.1\r\nHost: x\r\n" + jsonCT + "\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n4\r\n{}{}\r\n0\r\n\r\n", false, 400, "invalid_request"},
		{"chunked body that never ends", "POST " + refreshPath + " HTTP/1.1\r\nHost: x\r\n" + jsonCT + "\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"ses\r\n", true, 400, "invalid_request"},
		{"Content-Length longer than the body", "POST " + tokenPath + " HTTP/1.1\r\nHost: x\r\n" + jsonCT + "\r\nContent-Length: 1000\r\n\r\n{}", true, 400, "invalid_request"},
		{"unknown method", request("BREW", tokenPath, nil, ""), false, 405, "method_not_allowed"},
		{"huge path", request("POST", "/api/voice-agent/"+strings.Repeat("a", 30<<10), nil, ""), false, 404, "not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			status, body := rig.raw(t, tt.req, tt.stall)
			elapsed := time.Since(start)
			assert.Equal(t, tt.status, status, body)
			if tt.code != "" {
				var got struct {
					Success bool   `json:"success"`
					Error   string `json:"error"`
					Code    string `json:"code"`
				}
				require.NoError(t, json.Unmarshal([]byte(body), &got), body)
				assert.False(t, got.Success)
				assert.Equal(t, tt.code, got.Code)
				assert.NotEmpty(t, got.Error)
			}
			if tt.stall {
				// The server's read timeout ends the wait, not the client.
				assert.GreaterOrEqual(t, elapsed, hostileReadTimeout)
				assert.Less(t, elapsed, hostileReadTimeout+2*time.Second)
			}
			assert.Equal(t, before, rig.state(t), "state after the request")
		})
	}
	assert.Equal(t, 1, rig.minter.Calls(), "no hostile request reached the minter")
}

func repeatHeader(name string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s: 203.0.113.%d, 10.0.0.%d", name, i%250, i%250)
	}
	return out
}

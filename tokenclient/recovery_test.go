package tokenclient_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/tokenclient"
)

// switchableIP returns an http.Client whose connections leave from the
// loopback address in ip, one connection per request, so that the server
// sees the client move.
func switchableIP(ip *atomic.Value) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip.Load().(string))}}
			return d.DialContext(ctx, network, addr)
		},
	}}
}

// Each way the server can say "this session is gone" makes the client
// start a new session at once, without a backoff wait, and keep going.
func TestSessionGoneStartsNewSession(t *testing.T) {
	moved := new(atomic.Value)
	tests := []struct {
		name   string
		status int
		code   string
		server []realtimeauth.Option
		ip     *atomic.Value // the client's address, when it moves
		// gone breaks the session of first, the current token.
		gone func(t *testing.T, h *harness, rec *recorder, first tokenclient.TokenData)
	}{
		{
			name: "server restarted", status: http.StatusNotFound, code: string(realtimeauth.CodeSessionNotFound),
			gone: func(t *testing.T, h *harness, _ *recorder, _ tokenclient.TokenData) {
				h.serve(h.newHandler()) // a new handler, a new memory store
			},
		},
		{
			name: "revoked", status: http.StatusUnauthorized, code: string(realtimeauth.CodeSessionRevoked),
			gone: func(t *testing.T, h *harness, _ *recorder, first tokenclient.TokenData) {
				h.mu.Lock()
				hd := h.handler.(*realtimeauth.Handler)
				h.mu.Unlock()
				require.NoError(t, hd.RevokeSession(context.Background(), first.SessionID))
			},
		},
		{
			name: "refresh limit", status: http.StatusForbidden, code: string(realtimeauth.CodeRefreshLimitReached),
			server: []realtimeauth.Option{realtimeauth.WithLimits(realtimeauth.Limits{MaxRefreshes: 1, MinRefreshInterval: -1})},
			gone: func(t *testing.T, h *harness, rec *recorder, first tokenclient.TokenData) {
				h.next() // the one refresh allowed
				assert.Equal(t, first.SessionID, recv(t, rec.refreshed).SessionID)
			},
		},
		{
			// A session is bound to its client's IP address.
			name: "client moved", status: http.StatusForbidden, code: string(realtimeauth.CodeSessionMismatch),
			ip: moved,
			gone: func(t *testing.T, h *harness, _ *recorder, _ tokenclient.TokenData) {
				moved.Store("127.0.0.2")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.server...)
			rec := newRecorder()
			var opts []tokenclient.Option
			if tt.ip != nil {
				tt.ip.Store("127.0.0.1")
				opts = append(opts, tokenclient.WithHTTPClient(switchableIP(tt.ip)))
			}
			c := h.client(rec, 0, opts...)
			first, err := c.Token(context.Background())
			require.NoError(t, err)
			recv(t, rec.refreshed)

			tt.gone(t, h, rec, first)
			before := len(h.timers.Requested())
			h.next() // the refresh timer
			e := recv(t, rec.errs)
			fresh := recv(t, rec.refreshed)

			assert.Equal(t, tt.status, e.Status)
			assert.Equal(t, tt.code, e.Code)
			assert.Equal(t, "/refresh-token", e.Endpoint)
			assert.Equal(t, 1, e.Attempt)
			assert.True(t, e.SessionGone())
			reqs := h.requests()
			assert.Equal(t, []string{"/refresh-token", "/token"}, reqs[len(reqs)-2:])
			assert.NotEqual(t, first.SessionID, fresh.SessionID, "a new session")
			assert.True(t, validSessionID(fresh.SessionID))
			h.waitRequested(before + 2)
			assert.Equal(t, []time.Duration{32500 * time.Millisecond, 60 * time.Second}, h.timers.Requested()[before:],
				"the new token's refresh and expiry, no backoff wait")
			tok, err := c.Token(context.Background())
			require.NoError(t, err)
			assert.Equal(t, fresh, tok)
			assert.Empty(t, drain(rec.errs))

			// The new session refreshes normally.
			h.next()
			next := recv(t, rec.refreshed)
			assert.Equal(t, fresh.SessionID, next.SessionID)
		})
	}
}

// While refreshes fail, the current token stays in use until it really
// expires; then Expired fires, once, and the next Token starts again.
func TestExpiryWhileRefreshesFail(t *testing.T) {
	h := newHarness(t)
	rec := newRecorder()
	c := h.client(rec, 0, tokenclient.WithJitter(0))
	first, err := c.Token(context.Background())
	require.NoError(t, err)
	recv(t, rec.refreshed)

	h.minter.SetError(errors.New("upstream down"))
	h.timers.Advance(30 * time.Second) // refresh due
	for n := 3; n <= 11; n++ {
		h.waitRequested(n)
		if n == 7 { // the first round has given up; the token is still good
			tok, err := c.Token(context.Background())
			require.NoError(t, err)
			assert.Equal(t, first, tok)
			assert.Empty(t, drain(rec.expired))
		}
		h.next()
	}
	for range 10 {
		e := recv(t, rec.errs)
		assert.Equal(t, string(realtimeauth.CodeUpstreamError), e.Code)
		assert.Equal(t, "/refresh-token", e.Endpoint)
	}
	assert.Equal(t, []time.Duration{
		30 * time.Second, 60 * time.Second, // refresh, expiry
		500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, // round 1 ends at 37.5s
		10 * time.Second,                                                      // round 2 at 47.5s, a backoff cap later
		500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, // round 2 ends at 55s: no round 3
	}, h.timers.Requested())
	assert.Empty(t, drain(rec.expired), "not before the expiry")

	assert.Equal(t, 5*time.Second, h.next())
	assert.Equal(t, first, recv(t, rec.expired))
	assert.Empty(t, h.timers.Pending())

	h.minter.SetError(nil)
	tok, err := c.Token(context.Background())
	require.NoError(t, err)
	assert.Equal(t, first.SessionID, tok.SessionID, "the session outlives its token")
	assert.Equal(t, t0.Add(2*time.Minute), tok.ExpiresAt)
	assert.Equal(t, tok, recv(t, rec.refreshed))
	assert.Empty(t, drain(rec.expired))
	assert.Empty(t, drain(rec.errs))
}

// Statuses that cannot succeed on retry fail at the first attempt.
func TestFinalStatusesAreNotRetried(t *testing.T) {
	authn := realtimeauth.WithAuthenticator(func(r *http.Request) (string, error) {
		if r.Header.Get("Authorization") == "Bearer good" {
			return "user-1", nil
		}
		return "", errors.New("unauthenticated")
	})
	tests := []struct {
		name   string
		server []realtimeauth.Option
		script http.HandlerFunc
		path   string
		opts   []tokenclient.Option
		status int
		code   string
	}{
		{
			name:   "origin not allowed",
			server: []realtimeauth.Option{realtimeauth.WithAllowedOrigins("https://app.example.com")},
			opts:   []tokenclient.Option{tokenclient.WithHeader("Origin", "https://evil.example.com")},
			status: http.StatusForbidden, code: string(realtimeauth.CodeOriginNotAllowed),
		},
		{
			name:   "unauthorized",
			server: []realtimeauth.Option{authn},
			opts:   []tokenclient.Option{tokenclient.WithHeader("Authorization", "Bearer bad")},
			status: http.StatusUnauthorized, code: string(realtimeauth.CodeUnauthorized),
		},
		{
			name: "wrong base path", path: "/api/other",
			status: http.StatusNotFound, code: string(realtimeauth.CodeNotFound),
		},
		{
			name: "invalid request",
			script: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusBadRequest)
				_, _ = w.Write([]byte(`{"success":false,"error":"request body must be empty or a JSON object","code":"invalid_request"}`))
			},
			status: http.StatusBadRequest, code: string(realtimeauth.CodeInvalidRequest),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.server...)
			if tt.script != nil {
				h.serve(tt.script)
			}
			if tt.path != "" {
				h.base = h.srv.URL + tt.path
			}
			rec := newRecorder()
			c := h.client(rec, 0, tt.opts...)
			_, err := c.Token(context.Background())
			var e *tokenclient.Error
			require.ErrorAs(t, err, &e)
			assert.Equal(t, tt.status, e.Status)
			assert.Equal(t, tt.code, e.Code)
			assert.NotEmpty(t, e.Message)
			assert.Equal(t, 1, e.Attempt)
			assert.False(t, e.Retryable())
			assert.Len(t, h.requests(), 1)
			assert.Empty(t, h.timers.Requested(), "no backoff wait")
			assert.Equal(t, []*tokenclient.Error{e}, drain(rec.errs))
			assert.Zero(t, h.minter.Calls())
		})
	}

	t.Run("right credentials", func(t *testing.T) {
		h := newHarness(t, authn, realtimeauth.WithAllowedOrigins("https://app.example.com"))
		c := h.client(nil, 0,
			tokenclient.WithHeader("Authorization", "Bearer good"),
			tokenclient.WithHeader("Origin", "https://app.example.com"))
		tok, err := c.Token(context.Background())
		require.NoError(t, err)
		assert.Equal(t, "user-1", h.minter.Requests()[0].Subject)
		assert.Equal(t, "ek_test_1", tok.Token)
	})
}

// Answers that are not realtimeauth's own (a proxy's page, a broken
// body): the client retries what may pass and reads waits from either the
// header (seconds or date) or the body.
func TestUnusualAnswers(t *testing.T) {
	writeAnswer := func(status int, header map[string]string, body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			for k, v := range header {
				w.Header().Set(k, v)
			}
			w.WriteHeader(status)
			_, _ = w.Write([]byte(body))
		}
	}
	date := time.Date(2026, 11, 26, 18, 0, 0, 0, time.UTC) // far from every client clock
	tests := []struct {
		name    string
		answer  http.HandlerFunc
		status  int
		code    string
		wait    time.Duration
		wantErr bool // the Error carries a cause
	}{
		{"proxy page", writeAnswer(502, map[string]string{"Content-Type": "text/html"}, "<h1>Bad Gateway</h1>"),
			502, "", 500 * time.Millisecond, false},
		{"retryAfter in the body only", writeAnswer(429, nil, `{"success":false,"error":"slow down","code":"rate_limited","retryAfter":3}`),
			429, string(realtimeauth.CodeRateLimited), 3 * time.Second, false},
		{"Retry-After as a date", writeAnswer(503, map[string]string{
			"Retry-After": date.Add(4 * time.Second).Format(http.TimeFormat), "Date": date.Format(http.TimeFormat)}, `{}`),
			503, "", 4 * time.Second, false},
		{"malformed token answer", writeAnswer(200, nil, `{"success":true,"token":`),
			200, "", 500 * time.Millisecond, true},
		{"token without expiresIn", writeAnswer(200, nil, `{"success":true,"token":"ek_x","sessionId":"s","expiresIn":0}`),
			200, "", 500 * time.Millisecond, true},
		{"answer too large", writeAnswer(200, nil, `{"success":true,"token":"`+string(make([]byte, 70<<10))+`"}`),
			200, "", 500 * time.Millisecond, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			real := h.handler
			var n atomic.Int32
			h.serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if n.Add(1) == 1 {
					tt.answer(w, r)
					return
				}
				real.ServeHTTP(w, r)
			}))
			rec := newRecorder()
			c := h.client(rec, 0)
			res := tokenAsync(c, context.Background())
			e := recv(t, rec.errs)
			assert.Equal(t, tt.status, e.Status)
			assert.Equal(t, tt.code, e.Code)
			assert.True(t, e.Retryable())
			assert.Equal(t, tt.wantErr, e.Err != nil, "cause: %v", e.Err)
			h.waitRequested(1)
			assert.Equal(t, tt.wait, h.next())
			r := recv(t, res)
			require.NoError(t, r.err)
			assert.Equal(t, "ek_test_1", r.tok.Token)
		})
	}
}

func TestNetworkErrorIsRetried(t *testing.T) {
	h := newHarness(t)
	h.srv.Close()
	rec := newRecorder()
	c := h.client(rec, 0, tokenclient.WithBackoff(time.Second, time.Second, 2))
	res := tokenAsync(c, context.Background())
	h.waitRequested(1)
	h.next()
	r := recv(t, res)
	var e *tokenclient.Error
	require.ErrorAs(t, r.err, &e)
	assert.Zero(t, e.Status)
	assert.Error(t, e.Err)
	assert.Equal(t, 2, e.Attempt)
	var op *net.OpError
	assert.ErrorAs(t, r.err, &op, "the cause is reachable")
	assert.Len(t, drain(rec.errs), 2)
}

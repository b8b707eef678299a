package realtimeauth_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// faultKey is the API key of the fault matrix; faultSecret stands for the
// account details an upstream error message can carry. Neither may reach a
// client; the key may not reach the log either.
const (
	faultKey    = "sk-fault-matrix-4f1c9e27a0b3"
	faultSecret = "acct_8d2e_private_detail"
)

// lockedBuffer is a log sink safe for concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// upstreamError writes an OpenAI-style error whose message carries the
// secret and echoes the key, as OpenAI's "Incorrect API key provided" does.
func upstreamError(w http.ResponseWriter, status int) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("x-request-id", "req_fault")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, `{"error":{"message":"`+faultSecret+`: Incorrect API key provided: `+faultKey+`","type":"invalid_request_error"}}`)
}

func upstreamStatus(status int, header ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		upstreamError(w, status)
	}
}

func upstreamBody(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, body)
	}
}

// TestUpstreamFaultMatrix drives the whole handler against a real upstream
// that fails in every way the contract names.
func TestUpstreamFaultMatrix(t *testing.T) {
	checkGoroutines(t)
	future := time.Now().Add(time.Hour).Unix()
	past := time.Now().Add(-time.Hour).Unix()
	ms := time.Millisecond
	tests := []struct {
		name      string
		upstream  http.HandlerFunc
		timeout   time.Duration // the handler's upstream timeout
		minterCfg realtimeauth.OpenAIConfig
		status    int
		code      string
		retry     string // the client's Retry-After, "" for none
		hits      int64
		minTime   time.Duration
		maxTime   time.Duration
	}{
		{name: "500", upstream: upstreamStatus(500), status: 502, code: "upstream_error", hits: 3},
		{name: "502", upstream: upstreamStatus(502), status: 502, code: "upstream_error", hits: 3},
		{name: "503 without Retry-After", upstream: upstreamStatus(503), status: 502, code: "upstream_error", hits: 3},
		{name: "503 with Retry-After honoured once", upstream: upstreamStatus(503, "Retry-After", "1"), timeout: 1500 * ms,
			status: 502, code: "upstream_error", hits: 2, minTime: time.Second, maxTime: 1500 * ms},
		{name: "503 with Retry-After past the timeout", upstream: upstreamStatus(503, "Retry-After", "3"), timeout: 500 * ms,
			status: 502, code: "upstream_error", hits: 1, maxTime: 300 * ms},
		{name: "429 with retry-after-ms", upstream: upstreamStatus(429, "retry-after-ms", "40"),
			status: 503, code: "upstream_rate_limited", retry: "1", hits: 3, minTime: 80 * ms},
		{name: "429 with retry-after-ms past the timeout", upstream: upstreamStatus(429, "retry-after-ms", "5000"), timeout: time.Second,
			status: 503, code: "upstream_rate_limited", retry: "5", hits: 1, maxTime: 300 * ms},
		{name: "401", upstream: upstreamStatus(401), status: 502, code: "upstream_error", hits: 1},
		{name: "400", upstream: upstreamStatus(400), status: 502, code: "upstream_error", hits: 1},
		{name: "200 malformed JSON", upstream: upstreamBody(`{"value":"ek_x","expires_at":`), status: 502, code: "upstream_error", hits: 1},
		{name: "200 empty body", upstream: upstreamBody(""), status: 502, code: "upstream_error", hits: 1},
		{name: "200 expires_at in the past", upstream: upstreamBody(`{"value":"ek_stale","expires_at":` + itoa64(past) + `}`),
			status: 502, code: "upstream_error", hits: 1},
		{name: "200 body over the read cap", upstream: upstreamBody(`{"value":"ek_big","expires_at":` + itoa64(future) + `,"pad":"` + strings.Repeat("x", 4096) + `"}`),
			minterCfg: realtimeauth.OpenAIConfig{MaxUpstreamBody: 1024}, status: 502, code: "upstream_error", hits: 1},
		{name: "hang past the timeout", upstream: func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
			timeout: 200 * ms, status: 504, code: "upstream_timeout", hits: 1, minTime: 200 * ms, maxTime: time.Second},
		{name: "connection reset mid-body", upstream: func(w http.ResponseWriter, r *http.Request) {
			conn, buf, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			_, _ = buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"value\":\"ek_cut")
			_ = buf.Flush()
			_ = conn.Close()
		}, status: 502, code: "upstream_error", hits: 3},
		{name: "slow trickle body", upstream: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(200)
			rc := http.NewResponseController(w)
			for i := 0; i < 200; i++ {
				if _, err := io.WriteString(w, " "); err != nil || rc.Flush() != nil {
					return
				}
				select {
				case <-r.Context().Done():
					return
				case <-time.After(20 * ms):
				}
			}
		}, timeout: 200 * ms, status: 504, code: "upstream_timeout", hits: 1, minTime: 200 * ms, maxTime: time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var hits atomic.Int64
			var bodies sync.Map
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := hits.Add(1)
				b, _ := io.ReadAll(r.Body)
				bodies.Store(n, string(b))
				tt.upstream(w, r)
			}))
			defer up.Close()

			var logs lockedBuffer
			logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			cfg := tt.minterCfg
			cfg.BaseURL, cfg.RetryBackoff, cfg.MaxRetryBackoff, cfg.Logger = up.URL, 5*ms, 20*ms, logger
			minter, err := realtimeauth.NewOpenAIMinter(faultKey, cfg)
			require.NoError(t, err)
			timeout := tt.timeout
			if timeout == 0 {
				timeout = 2 * time.Second
			}
			h, err := realtimeauth.New(minter,
				realtimeauth.WithLimits(realtimeauth.Limits{UpstreamTimeout: timeout}),
				realtimeauth.WithLogger(logger),
			)
			require.NoError(t, err)
			defer h.Close()

			r := httptest.NewRequest(http.MethodPost, "/api/voice-agent/token", nil)
			r.RemoteAddr = "198.51.100.20:40000"
			w := httptest.NewRecorder()
			start := time.Now()
			h.ServeHTTP(w, r)
			elapsed := time.Since(start)

			body := w.Body.String()
			assert.Equal(t, tt.status, w.Code, body)
			var got struct {
				Success    bool   `json:"success"`
				Error      string `json:"error"`
				Code       string `json:"code"`
				RetryAfter *int   `json:"retryAfter"`
			}
			require.NoError(t, json.Unmarshal(w.Body.Bytes(), &got), body)
			assert.False(t, got.Success)
			assert.Equal(t, tt.code, got.Code)
			assert.NotEmpty(t, got.Error)
			assert.Equal(t, tt.retry, w.Header().Get("Retry-After"))
			assert.Equal(t, tt.retry != "", got.RetryAfter != nil, "retryAfter in the body goes with the header")

			assert.Equal(t, tt.hits, hits.Load(), "upstream hits (1 + retries)")
			first, _ := bodies.Load(int64(1))
			bodies.Range(func(_, b any) bool {
				assert.Equal(t, first, b, "a retry sends the same body")
				return true
			})
			maxTime := tt.maxTime
			if maxTime == 0 {
				maxTime = time.Second
			}
			assert.GreaterOrEqual(t, elapsed, tt.minTime)
			assert.Less(t, elapsed, maxTime)

			// What must never leak.
			for _, secret := range []string{faultKey, faultSecret, "Incorrect API key", "ek_"} {
				assert.NotContains(t, body, secret, "the client's answer")
				for k, v := range w.Header() {
					assert.NotContains(t, k+": "+strings.Join(v, ","), secret, "the client's headers")
				}
			}
			logged := logs.String()
			assert.NotContains(t, logged, faultKey, "the log")
			assert.Contains(t, logged, `"attempts":`+itoa64(tt.hits), "the log records the attempts")
			assert.Equal(t, int(tt.hits-1), strings.Count(logged, "retrying mint"), "each retry is logged")
			if strings.Contains(tt.name, "40") || tt.name == "500" {
				assert.Contains(t, logged, "req_fault", "the log keeps x-request-id")
				assert.Contains(t, logged, "[redacted]", "the upstream message is logged without the key")
			}
			assert.Equal(t, 0, h.Stats().ActiveSessions, "a failed mint leaves no session")
		})
	}
}

func itoa64(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// TestUpstreamRetryRecoversThroughHandler: a 502 and a reset connection,
// then a good answer, and the client gets its token on the third attempt.
func TestUpstreamRetryRecoversThroughHandler(t *testing.T) {
	checkGoroutines(t)
	var hits atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch hits.Add(1) {
		case 1:
			upstreamError(w, http.StatusBadGateway)
		case 2:
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				_ = conn.Close()
			}
		default:
			upstreamBody(`{"value":"ek_third_time","expires_at":`+itoa64(time.Now().Add(time.Minute).Unix())+`}`)(w, r)
		}
	}))
	defer up.Close()
	minter, err := realtimeauth.NewOpenAIMinter(faultKey, realtimeauth.OpenAIConfig{
		BaseURL:         up.URL,
		RetryBackoff:    time.Millisecond,
		MaxRetryBackoff: 5 * time.Millisecond,
		Logger:          silentLogger(),
	})
	require.NoError(t, err)
	h, err := realtimeauth.New(minter, realtimeauth.WithLogger(silentLogger()))
	require.NoError(t, err)
	defer h.Close()

	r := httptest.NewRequest(http.MethodPost, "/api/voice-agent/token", nil)
	r.RemoteAddr = "198.51.100.21:40000"
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	assert.Contains(t, w.Body.String(), `"token":"ek_third_time"`)
	assert.Equal(t, int64(3), hits.Load())
	assert.Equal(t, 1, h.Stats().ActiveSessions)
}

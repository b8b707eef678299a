package realtimeauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// scriptedAnswer is one upstream answer of a retry test.
type scriptedAnswer struct {
	status int
	header map[string]string
	body   string
	hangup bool // close the connection without an answer
}

var retryOKAnswer = scriptedAnswer{status: 200, body: `{"value":"ek_retry","expires_at":4102444800}`}

// scriptedUpstream answers in turn from script (the last answer repeats) and
// records every request body.
type scriptedUpstream struct {
	mu     sync.Mutex
	script []scriptedAnswer
	bodies []string
}

func (u *scriptedUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	u.mu.Lock()
	a := u.script[min(len(u.bodies), len(u.script)-1)]
	u.bodies = append(u.bodies, string(b))
	u.mu.Unlock()
	if a.hangup {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			_ = conn.Close()
		}
		return
	}
	for k, v := range a.header {
		w.Header().Set(k, v)
	}
	w.WriteHeader(a.status)
	_, _ = io.WriteString(w, a.body)
}

func (u *scriptedUpstream) hits() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.bodies...)
}

// retryRig is a minter against a scripted upstream whose waits are
// recorded, not slept.
type retryRig struct {
	m      *openAIMinter
	up     *scriptedUpstream
	mu     sync.Mutex
	waits  []time.Duration
	jitter float64
	log    bytes.Buffer // written only by the minting goroutine
}

// newRetryRig's minter has cfg with the rig's upstream and logger.
func newRetryRig(t *testing.T, script []scriptedAnswer, cfg ...OpenAIConfig) *retryRig {
	t.Helper()
	rr := &retryRig{up: &scriptedUpstream{script: script}}
	srv := httptest.NewServer(rr.up)
	t.Cleanup(srv.Close)
	c := OpenAIConfig{}
	if len(cfg) > 0 {
		c = cfg[0]
	}
	c.BaseURL, c.Logger = srv.URL, slog.New(slog.NewJSONHandler(&rr.log, nil))
	mi, err := NewOpenAIMinter("sk-retry-test-key", c)
	require.NoError(t, err)
	m := mi.(*openAIMinter)
	// The waits are recorded and added to a clock of their own, so that
	// the deadline check sees them pass.
	m.retry.now = func() time.Time {
		rr.mu.Lock()
		defer rr.mu.Unlock()
		var slept time.Duration
		for _, w := range rr.waits {
			slept += w
		}
		return time.Now().Add(slept)
	}
	m.retry.sleep = func(ctx context.Context, d time.Duration) error {
		rr.mu.Lock()
		rr.waits = append(rr.waits, d)
		rr.mu.Unlock()
		return ctx.Err()
	}
	m.retry.jitter = func() float64 { return rr.jitter }
	rr.m = m
	return rr
}

func (rr *retryRig) mint(t *testing.T, timeout time.Duration) (Token, *UpstreamError) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tok, err := rr.m.Mint(ctx, MintRequest{SessionID: "s", TTL: time.Minute})
	if err == nil {
		return tok, nil
	}
	var ue *UpstreamError
	require.ErrorAs(t, err, &ue)
	return tok, ue
}

func (rr *retryRig) recordedWaits() []time.Duration {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	return append([]time.Duration(nil), rr.waits...)
}

func answer(status int, header ...string) scriptedAnswer {
	a := scriptedAnswer{status: status, header: map[string]string{}, body: `{"error":{"message":"upstream says no"}}`}
	for i := 0; i+1 < len(header); i += 2 {
		a.header[header[i]] = header[i+1]
	}
	return a
}

func TestOpenAIMinterRetryPolicy(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name      string
		script    []scriptedAnswer
		cfg       OpenAIConfig
		timeout   time.Duration
		wantOK    bool
		wantHits  int
		wantWaits []time.Duration
		wantCode  int
	}{
		{"500 then success", []scriptedAnswer{answer(500), retryOKAnswer}, OpenAIConfig{}, 10 * time.Second, true, 2, []time.Duration{500 * ms}, 0},
		{"502 503 then success", []scriptedAnswer{answer(502), answer(503), retryOKAnswer}, OpenAIConfig{}, 10 * time.Second, true, 3, []time.Duration{500 * ms, 1000 * ms}, 0},
		{"500 forever: two retries", []scriptedAnswer{answer(500)}, OpenAIConfig{}, 10 * time.Second, false, 3, []time.Duration{500 * ms, 1000 * ms}, 500},
		{"408 retried", []scriptedAnswer{answer(408), retryOKAnswer}, OpenAIConfig{}, 10 * time.Second, true, 2, []time.Duration{500 * ms}, 0},
		{"409 retried", []scriptedAnswer{answer(409), retryOKAnswer}, OpenAIConfig{}, 10 * time.Second, true, 2, []time.Duration{500 * ms}, 0},
		{"429 with retry-after-ms", []scriptedAnswer{answer(429, "retry-after-ms", "120"), retryOKAnswer}, OpenAIConfig{}, 10 * time.Second, true, 2, []time.Duration{120 * ms}, 0},
		{"503 with Retry-After seconds", []scriptedAnswer{answer(503, "Retry-After", "2"), retryOKAnswer}, OpenAIConfig{}, 10 * time.Second, true, 2, []time.Duration{2 * time.Second}, 0},
		{"retry-after-ms wins over Retry-After", []scriptedAnswer{answer(429, "retry-after-ms", "30", "Retry-After", "5"), retryOKAnswer}, OpenAIConfig{}, 10 * time.Second, true, 2, []time.Duration{30 * ms}, 0},
		{"400 never retried", []scriptedAnswer{answer(400), retryOKAnswer}, OpenAIConfig{}, 10 * time.Second, false, 1, nil, 400},
		{"401 never retried", []scriptedAnswer{answer(401), retryOKAnswer}, OpenAIConfig{}, 10 * time.Second, false, 1, nil, 401},
		{"403 never retried", []scriptedAnswer{answer(403), retryOKAnswer}, OpenAIConfig{}, 10 * time.Second, false, 1, nil, 403},
		{"404 never retried", []scriptedAnswer{answer(404), retryOKAnswer}, OpenAIConfig{}, 10 * time.Second, false, 1, nil, 404},
		{"422 never retried", []scriptedAnswer{answer(422), retryOKAnswer}, OpenAIConfig{}, 10 * time.Second, false, 1, nil, 422},
		{"x-should-retry false stops a 503", []scriptedAnswer{answer(503, "x-should-retry", "false"), retryOKAnswer}, OpenAIConfig{}, 10 * time.Second, false, 1, nil, 503},
		{"x-should-retry true retries a 400", []scriptedAnswer{answer(400, "x-should-retry", "true"), retryOKAnswer}, OpenAIConfig{}, 10 * time.Second, true, 2, []time.Duration{500 * ms}, 0},
		{"connection reset retried", []scriptedAnswer{{hangup: true}, retryOKAnswer}, OpenAIConfig{}, 10 * time.Second, true, 2, []time.Duration{500 * ms}, 0},
		{"malformed 200 not retried", []scriptedAnswer{{status: 200, body: "{"}, retryOKAnswer}, OpenAIConfig{}, 10 * time.Second, false, 1, nil, 200},
		{"MaxRetries -1: none", []scriptedAnswer{answer(500), retryOKAnswer}, OpenAIConfig{MaxRetries: -1}, 10 * time.Second, false, 1, nil, 500},
		{"MaxRetries 4", []scriptedAnswer{answer(500)}, OpenAIConfig{MaxRetries: 4}, 10 * time.Second, false, 5, []time.Duration{500 * ms, time.Second, 2 * time.Second, 4 * time.Second}, 500},
		{"backoff capped", []scriptedAnswer{answer(500)}, OpenAIConfig{MaxRetries: 3, RetryBackoff: 100 * ms, MaxRetryBackoff: 250 * ms}, 10 * time.Second, false, 4, []time.Duration{100 * ms, 200 * ms, 250 * ms}, 500},
		{"Retry-After past the deadline: no wait", []scriptedAnswer{answer(429, "Retry-After", "30"), retryOKAnswer}, OpenAIConfig{}, 2 * time.Second, false, 1, nil, 429},
		{"backoff past the deadline: no wait", []scriptedAnswer{answer(500), retryOKAnswer}, OpenAIConfig{}, 300 * ms, false, 1, nil, 500},
		{"second backoff past the deadline", []scriptedAnswer{answer(500)}, OpenAIConfig{}, 1200 * ms, false, 2, []time.Duration{500 * ms}, 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rr := newRetryRig(t, tt.script, tt.cfg)
			tok, ue := rr.mint(t, tt.timeout)
			hits := rr.up.hits()
			assert.Len(t, hits, tt.wantHits, "upstream hits")
			assert.Equal(t, tt.wantWaits, rr.recordedWaits(), "waits")
			for _, b := range hits {
				assert.Equal(t, hits[0], b, "a retry sends the same body")
			}
			if tt.wantOK {
				assert.Nil(t, ue)
				assert.Equal(t, "ek_retry", tok.Value)
				return
			}
			require.NotNil(t, ue)
			assert.Equal(t, tt.wantHits, ue.Attempts, "UpstreamError.Attempts")
			assert.Equal(t, tt.wantCode, ue.StatusCode)
			assert.NotContains(t, ue.Error(), "sk-retry-test-key")
		})
	}
}

func TestOpenAIMinterRetryJitter(t *testing.T) {
	rr := newRetryRig(t, []scriptedAnswer{answer(500)})
	rr.jitter = 0.999
	_, ue := rr.mint(t, 10*time.Second)
	require.NotNil(t, ue)
	w := rr.recordedWaits()
	require.Len(t, w, 2)
	// Up to a quarter off: 500ms*(1-0.999/4) and 1s*(1-0.999/4).
	assert.InDelta(t, float64(375*time.Millisecond), float64(w[0]), float64(time.Millisecond))
	assert.InDelta(t, float64(750*time.Millisecond), float64(w[1]), float64(time.Millisecond))
}

func TestOpenAIMinterRetryKeepsRequestID(t *testing.T) {
	rr := newRetryRig(t, []scriptedAnswer{answer(502, "x-request-id", "req_1"), answer(502, "x-request-id", "req_2"), answer(502, "x-request-id", "req_3")})
	_, ue := rr.mint(t, 10*time.Second)
	require.NotNil(t, ue)
	assert.Equal(t, "req_3", ue.RequestID, "the last attempt's request ID")
	assert.Equal(t, 3, ue.Attempts)
	// The retried attempts are logged with theirs; the last is the
	// handler's to log.
	lines := strings.Split(strings.TrimSpace(rr.log.String()), "\n")
	require.Len(t, lines, 2)
	for i, id := range []string{"req_1", "req_2"} {
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(lines[i]), &rec))
		assert.Equal(t, "realtimeauth: retrying mint", rec["msg"])
		assert.Equal(t, id, rec["upstream_request_id"])
		assert.EqualValues(t, i+1, rec["attempt"])
		assert.EqualValues(t, 502, rec["upstream_status"])
	}
	assert.NotContains(t, rr.log.String(), "sk-retry-test-key")
}

func TestOpenAIMinterRetryStopsWhenContextEnds(t *testing.T) {
	rr := newRetryRig(t, []scriptedAnswer{answer(500)})
	ctx, cancel := context.WithCancel(context.Background())
	rr.m.retry.sleep = func(context.Context, time.Duration) error { cancel(); return context.Canceled }
	_, err := rr.m.Mint(ctx, MintRequest{TTL: time.Minute})
	var ue *UpstreamError
	require.ErrorAs(t, err, &ue)
	assert.Equal(t, 1, ue.Attempts)
	assert.Len(t, rr.up.hits(), 1)
}

func TestRetryOptionsValidated(t *testing.T) {
	for _, tc := range []struct {
		cfg  OpenAIConfig
		want string
	}{
		{OpenAIConfig{MaxRetries: 11}, "OpenAIConfig.MaxRetries"},
		{OpenAIConfig{RetryBackoff: -time.Millisecond}, "OpenAIConfig.RetryBackoff"},
		{OpenAIConfig{RetryBackoff: time.Microsecond}, "OpenAIConfig.RetryBackoff"},
		{OpenAIConfig{RetryBackoff: 2 * time.Second, MaxRetryBackoff: time.Second}, "OpenAIConfig.RetryBackoff"},
		{OpenAIConfig{RetryBackoff: time.Second, MaxRetryBackoff: 2 * time.Minute}, "OpenAIConfig.MaxRetryBackoff"},
		{OpenAIConfig{RetryBackoff: 2 * time.Minute}, "OpenAIConfig.MaxRetryBackoff"},
	} {
		_, err := NewOpenAIMinter("sk-x", tc.cfg)
		require.Error(t, err)
		assert.ErrorContains(t, err, tc.want)
	}
	// A zero MaxRetryBackoff follows a RetryBackoff over its default;
	// any negative MaxRetries means none.
	for _, cfg := range []OpenAIConfig{
		{RetryBackoff: 10 * time.Second},
		{MaxRetries: -1},
		{MaxRetries: -7},
		{MaxRetries: 10},
	} {
		_, err := NewOpenAIMinter("sk-x", cfg)
		require.NoError(t, err, "%+v", cfg)
	}
}

func TestSleepCtx(t *testing.T) {
	assert.NoError(t, sleepCtx(context.Background(), time.Microsecond))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.True(t, errors.Is(sleepCtx(ctx, time.Hour), context.Canceled))
}

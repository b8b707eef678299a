package metrics_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/metrics"
	"github.com/realtimeauth/realtimeauth/realtimeauthtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	base   = "/api/voice-agent"
	origin = "https://app.example.com"
)

type rig struct {
	h     *realtimeauth.Handler
	srv   http.Handler // h in the Collector's Middleware
	c     *metrics.Collector
	reg   *prometheus.Registry
	clock *realtimeauthtest.Clock
	mint  *realtimeauthtest.Minter
}

func newRig(t *testing.T, opts ...realtimeauth.Option) *rig {
	t.Helper()
	clock := realtimeauthtest.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	m := &realtimeauthtest.Minter{Now: clock.Now}
	c := metrics.New()
	metrics.SetClock(c, clock.Now)
	h, err := realtimeauth.New(m, append([]realtimeauth.Option{
		realtimeauth.WithClock(clock.Now),
		realtimeauth.WithAllowedOrigins(origin),
		realtimeauth.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		realtimeauth.WithEventHook(c.Event),
	}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Close() })
	c.Watch(h)
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))
	return &rig{h: h, srv: c.Middleware(h), c: c, reg: reg, clock: clock, mint: m}
}

func (r *rig) do(method, path, body string, hdr map[string]string) *httptest.ResponseRecorder {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	req.RemoteAddr = "203.0.113.7:5555"
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	r.srv.ServeHTTP(w, req)
	return w
}

// TestCollectorThroughHandler: the handler's events, latencies and health
// figures come out as the metrics they name.
func TestCollectorThroughHandler(t *testing.T) {
	r := newRig(t, realtimeauth.WithLimits(realtimeauth.Limits{
		Sessions:           realtimeauth.Rate{N: 2, Per: time.Minute},
		MaxRefreshes:       10,
		MinRefreshInterval: -1,
		UpstreamRate:       1e-9,
		UpstreamBurst:      3,
	}))
	r.mint.Func = func(_ context.Context, q realtimeauth.MintRequest) (realtimeauth.Token, error) {
		r.clock.Advance(300 * time.Millisecond)
		return realtimeauth.Token{Value: "ek_x", ExpiresAt: r.clock.Now().Add(q.TTL)}, nil
	}
	w := r.do(http.MethodPost, base+"/token", "", nil)
	require.Equal(t, 200, w.Code)
	sid := w.Body.String()[strings.Index(w.Body.String(), `"sessionId":"`)+13:][:36]
	require.Equal(t, 200, r.do(http.MethodPost, base+"/token", "", nil).Code)
	// With a mint still in the budget (it is looked at before the store).
	require.Equal(t, 429, r.do(http.MethodPost, base+"/token", "", nil).Code, "over the rate limit")
	require.Equal(t, 200, r.do(http.MethodPost, base+"/refresh-token", `{"sessionId":"`+sid+`"}`, nil).Code)
	require.Equal(t, 503, r.do(http.MethodPost, base+"/refresh-token", `{"sessionId":"`+sid+`"}`, nil).Code, "budget spent")
	require.Equal(t, 403, r.do(http.MethodPost, base+"/token", "", map[string]string{"Origin": "https://evil.example"}).Code)

	ev := func(name, code string) float64 {
		return testutil.ToFloat64(mustCounter(t, r.reg, "realtimeauth_events_total", map[string]string{"event": name, "code": code}))
	}
	assert.Equal(t, 2.0, ev("token_issued", ""))
	assert.Equal(t, 1.0, ev("token_refreshed", ""))
	assert.Equal(t, 1.0, ev("rate_limit_exceeded", "rate_limited"))
	assert.Equal(t, 1.0, ev("upstream_busy", "upstream_busy"))
	assert.Equal(t, 1.0, ev("origin_rejected", "origin_not_allowed"))

	fams := gather(t, r.reg)
	assert.Equal(t, 1.0, fams["realtimeauth_upstream_budget_refusals_total"].Metric[0].Counter.GetValue())
	assert.Equal(t, 0.0, fams["realtimeauth_store_errors_total"].Metric[0].Counter.GetValue())
	req := histograms(fams["realtimeauth_request_duration_seconds"])
	assert.Equal(t, uint64(3), req["2xx"].GetSampleCount())
	assert.InDelta(t, 0.9, req["2xx"].GetSampleSum(), 1e-9, "three requests of 300 ms on the handler's clock")
	assert.Equal(t, uint64(2), req["4xx"].GetSampleCount())
	assert.Equal(t, uint64(1), req["5xx"].GetSampleCount())
	mint := histograms(fams["realtimeauth_mint_duration_seconds"])
	assert.Equal(t, uint64(3), mint["ok"].GetSampleCount())
	assert.NotContains(t, mint, "error")

	assert.Equal(t, 2.0, fams["realtimeauth_active_sessions"].Metric[0].Gauge.GetValue())
	assert.InDelta(t, 0.0, fams["realtimeauth_upstream_budget_tokens"].Metric[0].Gauge.GetValue(), 1e-6, "saturated")
	assert.Equal(t, 3.0, fams["realtimeauth_upstream_budget_burst"].Metric[0].Gauge.GetValue())
	assert.Equal(t, 1_000_000.0, fams["realtimeauth_max_sessions"].Metric[0].Gauge.GetValue())
	svc := map[string]float64{}
	for _, m := range fams["realtimeauth_service_status"].Metric {
		svc[label(m, "service")+"/"+label(m, "status")] = m.Gauge.GetValue()
	}
	assert.Len(t, svc, 9)
	assert.Equal(t, 1.0, svc["openaiApi/operational"])
	assert.Equal(t, 0.0, svc["openaiApi/down"])
	assert.Equal(t, 1.0, svc["sessionTracking/operational"])
}

// failingStore's Count fails.
type failingStore struct{ realtimeauth.SessionStore }

func (failingStore) Count(context.Context, time.Time) (int, error) {
	return 0, fmt.Errorf("backend down")
}

// TestCollectorStoreDown: no active_sessions sample while the store cannot
// count (not a 0 that looks fine), and the services say down.
func TestCollectorStoreDown(t *testing.T) {
	r := newRig(t, realtimeauth.WithSessionStore(failingStore{realtimeauth.NewMemoryStore()}))
	fams := gather(t, r.reg)
	assert.NotContains(t, fams, "realtimeauth_active_sessions")
	assert.NotContains(t, fams, "realtimeauth_upstream_budget_tokens", "no budget configured")
	assert.Contains(t, fams, "realtimeauth_max_sessions", "the handler's cap (Limits.MaxSessions), whatever the store")
	for _, m := range fams["realtimeauth_service_status"].Metric {
		if label(m, "service") != "openaiApi" && label(m, "status") == "down" {
			assert.Equal(t, 1.0, m.Gauge.GetValue(), label(m, "service"))
		}
	}
}

// TestNoClientControlledLabel drives the handler with hostile requests and
// the hooks with hostile values: every label stays within its fixed set,
// and no hostile string reaches the exposition.
func TestNoClientControlledLabel(t *testing.T) {
	r := newRig(t, realtimeauth.WithLimits(realtimeauth.Limits{Sessions: realtimeauth.Rate{N: 3, Per: time.Minute}}), realtimeauth.WithAbuseGuard(nil))
	const evil = "EVIL\"}\n# injected"
	hostile := []struct {
		method, path, body string
		hdr                map[string]string
	}{
		{"POST", base + "/token", "", map[string]string{"User-Agent": evil, "Origin": "https://" + "evil.example"}},
		{"POST", base + "/token", `{"model":"` + evil + `"}`, map[string]string{"X-Forwarded-For": "6.6.6.6", "X-Request-Id": evil}},
		{"POST", base + "/refresh-token", `{"sessionId":"` + evil + `"}`, nil},
		{"POST", base + "/refresh-token", `{"sessionId":"6f1c1f0e-3c1e-4f37-9a3e-2b8d6f0d4a11"}`, nil},
		{"GET", base + "/" + url.PathEscape(evil), "", nil},
		{"PATCH", base + "/token", "", nil},
		{"POST", base + "/token", "not json", nil},
		{"POST", base + "/token", strings.Repeat("x", 70<<10), nil},
		{"OPTIONS", base + "/token", "", map[string]string{"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}},
	}
	for range 3 {
		for _, q := range hostile {
			r.do(q.method, q.path, q.body, q.hdr)
		}
	}
	// A hook can be handed anything, and the Middleware can wrap anything.
	r.c.Event(realtimeauth.Event{Name: evil, Code: evil, ClientIP: evil, UserAgent: evil, Subject: evil, SessionID: evil, Detail: evil})
	r.c.Event(realtimeauth.Event{Name: realtimeauth.EventTokenIssued, Code: evil})
	r.c.Event(realtimeauth.Event{Name: realtimeauth.EventUpstreamError, Code: evil, Latency: -time.Second})
	odd := r.c.Middleware(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(999) }))
	odd.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/"+url.PathEscape(evil)+"/token", nil))

	allowed := map[string]map[string]bool{
		"event":   {"other": true},
		"code":    {"other": true, "": true},
		"class":   {"1xx": true, "2xx": true, "3xx": true, "4xx": true, "5xx": true, "other": true, "error": true},
		"outcome": {"ok": true, "error": true},
		"service": {"openaiApi": true, "rateLimit": true, "sessionTracking": true},
		"status":  {"operational": true, "degraded": true, "down": true},
	}
	for _, n := range []string{"token_issued", "token_refreshed", "rate_limit_exceeded", "client_blocked", "origin_rejected",
		"session_mismatch", "refresh_limit_reached", "refresh_too_soon", "session_revoked", "unauthorized", "upstream_error",
		"invalid_request", "session_not_found", "too_many_sessions", "upstream_busy", "store_error", "session_evicted",
		"call_started", "call_ended", "too_many_calls"} {
		allowed["event"][n] = true
	}
	for _, c := range []string{"invalid_request", "unsupported_media_type", "origin_not_allowed", "unauthorized", "forbidden",
		"blocked", "session_mismatch", "session_revoked", "refresh_limit_reached", "session_not_found", "not_found",
		"method_not_allowed", "payload_too_large", "rate_limited", "refresh_too_soon", "too_many_sessions", "upstream_error",
		"upstream_rate_limited", "upstream_busy", "upstream_timeout", "store_unavailable", "internal_error", "unavailable",
		"client_closed_request", "too_many_calls", "call_mismatch", "call_not_found", "relay_unavailable"} {
		allowed["code"][c] = true
	}
	series := 0
	for name, f := range gather(t, r.reg) {
		for _, m := range f.Metric {
			series++
			for _, lp := range m.Label {
				vals, ok := allowed[lp.GetName()]
				require.True(t, ok, "%s: unexpected label %q", name, lp.GetName())
				assert.True(t, vals[lp.GetValue()], "%s: label %s=%q is outside its fixed set", name, lp.GetName(), lp.GetValue())
			}
		}
	}
	assert.Less(t, series, 60, "a bounded number of series")
	assert.Equal(t, 1.0, testutil.ToFloat64(mustCounter(t, r.reg, "realtimeauth_events_total", map[string]string{"event": "other", "code": "other"})))

	text, err := testutil.CollectAndFormat(r.c, expfmt.TypeTextPlain)
	require.NoError(t, err)
	assert.NotContains(t, string(text), "EVIL")
	assert.NotContains(t, string(text), "injected")
	assert.NotContains(t, string(text), "6.6.6.6")
	assert.NotContains(t, string(text), "203.0.113.7")
}

// TestTransportCountsRetries: through a real OpenAI minter, a mint that
// needed three calls counts three attempts and two retries; the next mint's
// first call is no retry.
func TestTransportCountsRetries(t *testing.T) {
	var calls atomic.Int32
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if n := calls.Add(1); n == 2 || n == 3 {
			w.Header().Set("retry-after-ms", "1")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, `{"error":{"message":"server error"}}`)
			return
		}
		fmt.Fprintf(w, `{"value":"ek_test","expires_at":%d}`, time.Now().Add(time.Minute).Unix())
	}))
	defer upstream.Close()
	c := metrics.New()
	m, err := realtimeauth.NewOpenAIMinter("sk-test", realtimeauth.OpenAIConfig{
		BaseURL:       upstream.URL + "/v1",
		WrapTransport: c.Transport, // on the minter's own transport
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	require.NoError(t, err)
	h, err := realtimeauth.New(m, realtimeauth.WithEventHook(c.Event),
		realtimeauth.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	require.NoError(t, err)
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))

	token := func() int {
		w := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, base+"/token", nil)
		h.ServeHTTP(w, req)
		return w.Code
	}
	require.Equal(t, 200, token())
	require.Equal(t, 200, token(), "three calls: one failure, then a retry that fails, then one that succeeds")
	require.Equal(t, 200, token())
	assert.Equal(t, int32(5), calls.Load())
	fams := gather(t, reg)
	att := map[string]float64{}
	for _, m := range fams["realtimeauth_upstream_attempts_total"].Metric {
		att[label(m, "class")] = m.Counter.GetValue()
	}
	assert.Equal(t, map[string]float64{"2xx": 3, "5xx": 2}, att)
	assert.Equal(t, 2.0, fams["realtimeauth_upstream_retries_total"].Metric[0].Counter.GetValue())
	assert.Equal(t, uint64(3), histograms(fams["realtimeauth_mint_duration_seconds"])["ok"].GetSampleCount())
}

// TestTransportError: a call that gets no answer counts as an "error"
// attempt.
func TestTransportError(t *testing.T) {
	c := metrics.New()
	rt := c.Transport(roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, fmt.Errorf("refused") }))
	req := httptest.NewRequest(http.MethodPost, "http://upstream.invalid/", nil)
	_, err := rt.RoundTrip(req)
	require.Error(t, err)
	reg := registry(t, c)
	assert.Equal(t, 1.0, testutil.ToFloat64(mustCounter(t, reg, "realtimeauth_upstream_attempts_total", map[string]string{"class": "error"})))
	assert.Equal(t, 0.0, testutil.ToFloat64(mustCounter(t, reg, "realtimeauth_upstream_retries_total", nil)))
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func registry(t *testing.T, c *metrics.Collector) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))
	return reg
}

func gather(t *testing.T, reg *prometheus.Registry) map[string]*dto.MetricFamily {
	t.Helper()
	fams, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

func label(m *dto.Metric, name string) string {
	for _, lp := range m.Label {
		if lp.GetName() == name {
			return lp.GetValue()
		}
	}
	return ""
}

func histograms(f *dto.MetricFamily) map[string]*dto.Histogram {
	out := map[string]*dto.Histogram{}
	if f == nil {
		return out
	}
	for _, m := range f.Metric {
		for _, lp := range m.Label {
			out[lp.GetValue()] = m.Histogram
		}
	}
	return out
}

// mustCounter finds the counter of family name with exactly labels.
func mustCounter(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) prometheus.Collector {
	t.Helper()
	f := gather(t, reg)[name]
	require.NotNil(t, f, name)
	for _, m := range f.Metric {
		match := len(m.Label) == len(labels)
		for _, lp := range m.Label {
			if labels[lp.GetName()] != lp.GetValue() {
				match = false
			}
		}
		if match {
			return constCounter(m.Counter.GetValue())
		}
	}
	t.Fatalf("%s%v: no such series", name, labels)
	return nil
}

func constCounter(v float64) prometheus.Collector {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
	c.Add(v)
	return c
}

type fixedStats realtimeauth.Stats

func (f fixedStats) Stats() realtimeauth.Stats { return realtimeauth.Stats(f) }

// TestCollectorActiveCalls: the call registry's count, absent while it
// cannot count.
func TestCollectorActiveCalls(t *testing.T) {
	c := metrics.New()
	reg := registry(t, c)
	c.Watch(fixedStats{ActiveCalls: 3, ActiveSessions: 5})
	fams := gather(t, reg)
	assert.Equal(t, 3.0, fams["realtimeauth_active_calls"].Metric[0].Gauge.GetValue())
	c.Watch(fixedStats{ActiveCalls: -1, ActiveSessions: 5})
	assert.NotContains(t, gather(t, reg), "realtimeauth_active_calls")
}

// TestMiddlewareObserves: the token, refresh and call requests are timed by
// the status the wrapped handler answered (200 when it wrote none);
// preflights, health, the scripts and other methods are not.
func TestMiddlewareObserves(t *testing.T) {
	c := metrics.New()
	reg := registry(t, c)
	status := map[string]int{"/token": 201, "/refresh-token": 429, "/calls": 502}
	srv := c.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if st, ok := status[strings.TrimPrefix(r.URL.Path, base)]; ok {
			w.WriteHeader(st)
			w.WriteHeader(500) // a superfluous second call changes nothing
			return
		}
		if r.Method == http.MethodDelete {
			_, _ = io.WriteString(w, "body without a header")
		}
	}))
	for _, q := range []struct{ method, path string }{
		{"POST", base + "/token"}, {"POST", base + "/refresh-token"}, {"POST", base + "/calls"},
		{"DELETE", base + "/calls/rtc_1"},
		{"OPTIONS", base + "/token"}, {"GET", base + "/token"}, {"GET", base + "/health"}, {"GET", base + "/client.js"},
		{"DELETE", base + "/calls"}, {"DELETE", base + "/calls/"}, {"POST", base + "/calls/rtc_1"}, {"POST", base + "/compatibility"},
	} {
		srv.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(q.method, q.path, nil))
	}
	got := map[string]uint64{}
	for class, h := range histograms(gather(t, reg)["realtimeauth_request_duration_seconds"]) {
		got[class] = h.GetSampleCount()
	}
	assert.Equal(t, map[string]uint64{"2xx": 2, "4xx": 1, "5xx": 1}, got)
}

// TestMintErrors: a failed mint is observed as an "error" with the latency
// its upstream_error carries; a failed hang-up's, which carries none, is
// not a mint.
func TestMintErrors(t *testing.T) {
	r := newRig(t)
	r.mint.Func = func(context.Context, realtimeauth.MintRequest) (realtimeauth.Token, error) {
		r.clock.Advance(2 * time.Second)
		return realtimeauth.Token{}, &realtimeauth.UpstreamError{StatusCode: 500}
	}
	require.Equal(t, 502, r.do(http.MethodPost, base+"/token", "", nil).Code)
	r.c.Event(realtimeauth.Event{Name: realtimeauth.EventUpstreamError, Code: realtimeauth.CodeUpstreamError})
	mint := histograms(gather(t, r.reg)["realtimeauth_mint_duration_seconds"])
	assert.NotContains(t, mint, "ok")
	require.Contains(t, mint, "error")
	assert.Equal(t, uint64(1), mint["error"].GetSampleCount())
	assert.InDelta(t, 2.0, mint["error"].GetSampleSum(), 1e-9)
}

// Package metrics exports a realtimeauth Handler's figures to Prometheus
// (client_golang): counters of its security events by event and code,
// histograms of request and upstream mint latency, upstream attempts and
// retries, store errors, upstream budget refusals, the active sessions and
// the services' states.
//
//	c := metrics.New()
//	minter, err := realtimeauth.NewOpenAIMinter(key, realtimeauth.OpenAIConfig{
//		WrapTransport: c.Transport,
//	})
//	h, err := realtimeauth.New(minter, realtimeauth.WithEventHook(c.Event))
//	c.Watch(h)
//	http.Handle("/api/voice-agent/", c.Middleware(h))
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(c)
//	go http.ListenAndServe("127.0.0.1:9090", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// No label takes a value a client controls: event names and codes outside
// the handler's own fixed sets are counted as "other", and nothing about
// the client (address, user agent, session, path) is a label.
package metrics

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/realtimeauth/realtimeauth"
)

// Namespace prefixes every metric name.
const Namespace = "realtimeauth"

// other stands for any label value outside the known set.
const other = "other"

// Known label values. A hook receives Events by value, so a caller could
// hand it anything: only these pass through as labels.
var (
	eventNames = set(
		realtimeauth.EventTokenIssued, realtimeauth.EventTokenRefreshed, realtimeauth.EventRateLimitExceeded,
		realtimeauth.EventClientBlocked, realtimeauth.EventOriginRejected, realtimeauth.EventSessionMismatch,
		realtimeauth.EventRefreshLimitReached, realtimeauth.EventRefreshTooSoon, realtimeauth.EventSessionRevoked,
		realtimeauth.EventUnauthorized, realtimeauth.EventUpstreamError, realtimeauth.EventInvalidRequest,
		realtimeauth.EventSessionNotFound, realtimeauth.EventTooManySessions, realtimeauth.EventUpstreamBusy,
		realtimeauth.EventStoreError, realtimeauth.EventSessionEvicted,
		realtimeauth.EventCallStarted, realtimeauth.EventCallEnded, realtimeauth.EventTooManyCalls,
	)
	codes = set[realtimeauth.Code]("",
		realtimeauth.CodeInvalidRequest, realtimeauth.CodeUnsupportedMediaType, realtimeauth.CodeOriginNotAllowed,
		realtimeauth.CodeUnauthorized, realtimeauth.CodeForbidden, realtimeauth.CodeBlocked,
		realtimeauth.CodeSessionMismatch, realtimeauth.CodeSessionRevoked, realtimeauth.CodeRefreshLimitReached,
		realtimeauth.CodeSessionNotFound, realtimeauth.CodeNotFound, realtimeauth.CodeMethodNotAllowed,
		realtimeauth.CodePayloadTooLarge, realtimeauth.CodeRateLimited, realtimeauth.CodeRefreshTooSoon,
		realtimeauth.CodeTooManySessions, realtimeauth.CodeUpstreamError, realtimeauth.CodeUpstreamRateLimited,
		realtimeauth.CodeUpstreamBusy, realtimeauth.CodeUpstreamTimeout, realtimeauth.CodeStoreUnavailable,
		realtimeauth.CodeInternal, realtimeauth.CodeUnavailable, realtimeauth.CodeClientClosedRequest,
		realtimeauth.CodeTooManyCalls, realtimeauth.CodeCallMismatch, realtimeauth.CodeCallNotFound,
		realtimeauth.CodeRelayUnavailable,
	)
	services = []string{"openaiApi", "rateLimit", "sessionTracking"}
	states   = []string{"operational", "degraded", "down"}
)

func set[T ~string](vals ...T) map[string]bool {
	m := make(map[string]bool, len(vals))
	for _, v := range vals {
		m[string(v)] = true
	}
	return m
}

func known(m map[string]bool, v string) string {
	if m[v] {
		return v
	}
	return other
}

// statusClass is "2xx" … "5xx" for an HTTP status, "other" otherwise.
func statusClass(status int) string {
	if status < 100 || status > 599 {
		return other
	}
	return strconv.Itoa(status/100) + "xx"
}

// Stats is what Watch reads at each scrape: *realtimeauth.Handler.
type Stats interface {
	Stats() realtimeauth.Stats
}

// Collector is a prometheus.Collector of one Handler's figures. Its
// methods are safe for concurrent use; register it once.
type Collector struct {
	events       *prometheus.CounterVec
	requests     *prometheus.HistogramVec
	mints        *prometheus.HistogramVec
	attempts     *prometheus.CounterVec
	retries      prometheus.Counter
	storeErrors  prometheus.Counter
	upstreamBusy prometheus.Counter

	activeSessions *prometheus.Desc
	activeCalls    *prometheus.Desc
	maxSessions    *prometheus.Desc
	budgetTokens   *prometheus.Desc
	budgetBurst    *prometheus.Desc
	service        *prometheus.Desc

	stats atomic.Pointer[Stats]
	now   func() time.Time // the Middleware's clock: time.Now (export_test.go sets it)
}

var _ prometheus.Collector = (*Collector)(nil)

// New returns a Collector with nothing counted yet.
func New() *Collector {
	name := func(n string) string { return prometheus.BuildFQName(Namespace, "", n) }
	return &Collector{
		now: time.Now,
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: name("events_total"),
			Help: "Security events by event name and answer code (code empty for successes).",
		}, []string{"event", "code"}),
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    name("request_duration_seconds"),
			Help:    "Token and refresh request handling time, by the answer's status class.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"class"}),
		mints: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    name("mint_duration_seconds"),
			Help:    "Upstream mint latency, retries included, by outcome (ok or error).",
			Buckets: []float64{.05, .1, .25, .5, 1, 2, 3, 5, 10, 20},
		}, []string{"outcome"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: name("upstream_attempts_total"),
			Help: "Upstream HTTP calls made through Transport, by status class (error: no answer).",
		}, []string{"class"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: name("upstream_retries_total"),
			Help: "Upstream HTTP calls made through Transport that repeated a mint's earlier call.",
		}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: name("store_errors_total"),
			Help: "Requests refused because a backing store (sessions, limits, blocks) failed.",
		}),
		upstreamBusy: prometheus.NewCounter(prometheus.CounterOpts{
			Name: name("upstream_budget_refusals_total"),
			Help: "Requests refused because the upstream budget (Limits.UpstreamRate) was exhausted.",
		}),
		activeSessions: prometheus.NewDesc(name("active_sessions"),
			"Live sessions in the store (absent while the store cannot count them).", nil, nil),
		activeCalls: prometheus.NewDesc(name("active_calls"),
			"Live relayed calls in the call registry (absent while it cannot count them).", nil, nil),
		maxSessions: prometheus.NewDesc(name("max_sessions"),
			"The cap on live sessions (Limits.MaxSessions).", nil, nil),
		budgetTokens: prometheus.NewDesc(name("upstream_budget_tokens"),
			"Mints the upstream budget (Limits.UpstreamRate) would admit at once now; 0 is saturated (absent without a budget).", nil, nil),
		budgetBurst: prometheus.NewDesc(name("upstream_budget_burst"),
			"The upstream budget's burst (absent without a budget).", nil, nil),
		service: prometheus.NewDesc(name("service_status"),
			"1 for each service's current state (operational, degraded, down), 0 for the others.",
			[]string{"service", "status"}, nil),
	}
}

// Event counts ev; pass it to realtimeauth.WithEventHook (or call it from
// your own hook). It also observes the mint latency events carry
// (Event.Latency): token_issued, token_refreshed and call_started as "ok",
// the upstream_error of a failed mint or call as "error" (a failed
// hang-up's carries no latency and is no mint).
func (c *Collector) Event(ev realtimeauth.Event) {
	name := known(eventNames, string(ev.Name))
	c.events.WithLabelValues(name, known(codes, string(ev.Code))).Inc()
	switch ev.Name {
	case realtimeauth.EventStoreError:
		c.storeErrors.Inc()
	case realtimeauth.EventUpstreamBusy:
		c.upstreamBusy.Inc()
	case realtimeauth.EventTokenIssued, realtimeauth.EventTokenRefreshed, realtimeauth.EventCallStarted:
		c.mints.WithLabelValues("ok").Observe(ev.Latency.Seconds())
	case realtimeauth.EventUpstreamError:
		if ev.Latency > 0 {
			c.mints.WithLabelValues("error").Observe(ev.Latency.Seconds())
		}
	}
}

// Middleware wraps next, the Handler, to observe the handling time of its
// token, refresh and call requests (request_duration_seconds) by the class
// of the status answered: POST to a path ending in /token, /refresh-token
// or /calls, and DELETE of /calls/{id}. Preflights, health, the scripts and
// refused methods are not observed. Mount the wrapped handler where the
// Handler would be.
func (c *Collector) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !measured(r) {
			next.ServeHTTP(w, r)
			return
		}
		start := c.now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		c.requests.WithLabelValues(statusClass(sw.code())).Observe(c.now().Sub(start).Seconds())
	})
}

// measured reports whether r is a token, refresh or call request.
func measured(r *http.Request) bool {
	p := r.URL.Path
	switch r.Method {
	case http.MethodPost:
		return strings.HasSuffix(p, "/token") || strings.HasSuffix(p, "/refresh-token") || strings.HasSuffix(p, "/calls")
	case http.MethodDelete:
		i := strings.LastIndexByte(p, '/')
		return i >= 0 && i < len(p)-1 && strings.HasSuffix(p[:i], "/calls")
	}
	return false
}

// statusWriter records the status a handler answers.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 { // not an informational 1xx
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the ResponseWriter.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// code is the status answered: 200 when the handler wrote none.
func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// Watch makes each scrape report s's active sessions, capacity and
// services (Handler.Stats, which asks the store within two seconds).
func (c *Collector) Watch(s Stats) { c.stats.Store(&s) }

// counted lists the metrics the Collector counts itself, as opposed to the
// gauges it reads from Stats at each scrape: Describe and Collect walk the
// same list.
func (c *Collector) counted() []prometheus.Collector {
	return []prometheus.Collector{c.events, c.requests, c.mints, c.attempts, c.retries, c.storeErrors, c.upstreamBusy}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.counted() {
		m.Describe(ch)
	}
	ch <- c.activeSessions
	ch <- c.activeCalls
	ch <- c.maxSessions
	ch <- c.budgetTokens
	ch <- c.budgetBurst
	ch <- c.service
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c.counted() {
		m.Collect(ch)
	}
	sp := c.stats.Load()
	if sp == nil {
		return
	}
	st := (*sp).Stats()
	if st.ActiveSessions >= 0 {
		ch <- prometheus.MustNewConstMetric(c.activeSessions, prometheus.GaugeValue, float64(st.ActiveSessions))
	}
	if st.ActiveCalls >= 0 {
		ch <- prometheus.MustNewConstMetric(c.activeCalls, prometheus.GaugeValue, float64(st.ActiveCalls))
	}
	if st.MaxSessions > 0 {
		ch <- prometheus.MustNewConstMetric(c.maxSessions, prometheus.GaugeValue, float64(st.MaxSessions))
	}
	if st.UpstreamBurst > 0 {
		ch <- prometheus.MustNewConstMetric(c.budgetTokens, prometheus.GaugeValue, st.UpstreamTokens)
		ch <- prometheus.MustNewConstMetric(c.budgetBurst, prometheus.GaugeValue, float64(st.UpstreamBurst))
	}
	for i, s := range []string{st.OpenAI.Status, st.RateLimit.Status, st.SessionTracking.Status} {
		for _, state := range states {
			v := 0.0
			if s == state {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.service, prometheus.GaugeValue, v, services[i], state)
		}
	}
}

// Transport wraps the minter's HTTP transport (nil: http.DefaultTransport)
// to count upstream attempts and retries: a call whose request context is
// one an earlier call of the same mint used is a retry. The handler gives
// every mint a context of its own (with the upstream deadline), so each
// mint's first call is an attempt and the rest are retries; a request
// without a cancellable context is never counted as a retry.
func (c *Collector) Transport(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return &transport{next: next, c: c}
}

type transport struct {
	next http.RoundTripper
	c    *Collector
	seen sync.Map // a mint context's Done channel → struct{}, until it is done
}

func (t *transport) RoundTrip(r *http.Request) (*http.Response, error) {
	ctx := r.Context()
	if done := ctx.Done(); done != nil {
		if _, again := t.seen.LoadOrStore(done, struct{}{}); again {
			t.c.retries.Inc()
		} else {
			context.AfterFunc(ctx, func() { t.seen.Delete(done) })
		}
	}
	resp, err := t.next.RoundTrip(r)
	class := "error"
	if err == nil {
		class = statusClass(resp.StatusCode)
	}
	t.c.attempts.WithLabelValues(class).Inc()
	return resp, err
}

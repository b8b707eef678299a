package realtimeauth

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"
)

// Statuses reported by Stats and the health endpoint.
const (
	StatusHealthy   = "healthy"
	StatusDegraded  = "degraded"
	StatusUnhealthy = "unhealthy"

	ServiceOperational = "operational"
	ServiceDegraded    = "degraded"
	ServiceDown        = "down"
)

// Stats are the numbers the health endpoint reports. Windowed figures cover
// the last five minutes (MetricsWindow).
type Stats struct {
	Status string
	Time   time.Time
	Uptime time.Duration

	OpenAI          ServiceHealth
	RateLimit       ServiceHealth
	SessionTracking ServiceHealth

	// TotalRequests counts token and refresh requests since New.
	TotalRequests int64
	// ActiveSessions is the session store's count of live sessions.
	ActiveSessions int
	// TotalRefreshes counts successful refreshes since New.
	TotalRefreshes int64
	// ErrorRate is the share of token and refresh requests answered with a
	// 5xx over the window (0 with no requests).
	ErrorRate float64
	// AverageResponseTime is their mean handling time over the window.
	AverageResponseTime time.Duration
}

// ServiceHealth is one dependency's state, judged from the handler's own
// recent calls to it (no probe, so no paid upstream call).
type ServiceHealth struct {
	Status string
	// Latency is the mean latency of the window's calls (upstream only).
	Latency time.Duration
}

// MetricsWindow is the span of the windowed health figures.
const MetricsWindow = 5 * time.Minute

const (
	bucketSpan = 10 * time.Second
	numBuckets = int(MetricsWindow / bucketSpan)
	// downAfter consecutive failures mark a dependency down.
	downAfter = 3
	// slowUpstream mean mint latency marks OpenAI degraded.
	slowUpstream = 3 * time.Second
)

type bucket struct {
	slot                int64 // which bucketSpan since the Unix epoch
	requests, errors    int64
	latency             time.Duration
	mints, mintFailures int64
	mintLatency         time.Duration
	storeErrs           int64
}

type dependency struct{ consecutive int }

func (d *dependency) record(ok bool) {
	if ok {
		d.consecutive = 0
	} else {
		d.consecutive++
	}
}

type metrics struct {
	mu             sync.Mutex
	buckets        [numBuckets]bucket
	totalRequests  int64
	totalRefreshes int64
	upstream       dependency
	store          dependency
}

// at returns the bucket for t, recycling it when it belongs to an older
// slot. Callers hold mu.
func (m *metrics) at(t time.Time) *bucket {
	slot := t.UnixNano() / int64(bucketSpan)
	b := &m.buckets[slot%int64(numBuckets)]
	if b.slot != slot {
		*b = bucket{slot: slot}
	}
	return b
}

func (m *metrics) request(t time.Time, status int, d time.Duration, refreshed bool) {
	m.mu.Lock()
	b := m.at(t)
	b.requests++
	if status >= 500 {
		b.errors++
	}
	b.latency += d
	m.totalRequests++
	if refreshed {
		m.totalRefreshes++
	}
	m.mu.Unlock()
}

func (m *metrics) mint(t time.Time, d time.Duration, ok bool) {
	m.mu.Lock()
	b := m.at(t)
	b.mints++
	b.mintLatency += d
	if !ok {
		b.mintFailures++
	}
	m.upstream.record(ok)
	m.mu.Unlock()
}

func (m *metrics) storeResult(t time.Time, ok bool) {
	m.mu.Lock()
	if !ok {
		m.at(t).storeErrs++
	}
	m.store.record(ok)
	m.mu.Unlock()
}

func depStatus(d dependency, windowFailures int64) string {
	switch {
	case d.consecutive >= downAfter:
		return ServiceDown
	case d.consecutive > 0 || windowFailures > 0:
		return ServiceDegraded
	}
	return ServiceOperational
}

// statsTimeout bounds the session store's Count in Stats.
const statsTimeout = 2 * time.Second

// Stats returns the figures the health endpoint reports. It asks the
// session store for its count, with a two-second deadline.
func (h *Handler) Stats() Stats {
	ctx, cancel := context.WithTimeout(context.Background(), statsTimeout)
	defer cancel()
	return h.stats(ctx)
}

// stats is Stats within ctx: the health endpoint passes the request's
// context, so a client that goes away does not keep a store call running.
func (h *Handler) stats(ctx context.Context) Stats {
	now := h.now()
	active, countErr := h.store.Count(ctx, now)
	// A successful count is a sign of life too: without it, a store that
	// failed three health checks stayed "down" after it recovered, until a
	// token request happened to use it.
	h.m.storeResult(now, countErr == nil)

	st := Stats{Time: now, Uptime: now.Sub(h.start)}
	var sum bucket
	h.m.mu.Lock()
	cur := now.UnixNano() / int64(bucketSpan)
	for i := range h.m.buckets {
		b := &h.m.buckets[i]
		if b.slot > cur-int64(numBuckets) && b.slot <= cur {
			sum.requests += b.requests
			sum.errors += b.errors
			sum.latency += b.latency
			sum.mints += b.mints
			sum.mintFailures += b.mintFailures
			sum.mintLatency += b.mintLatency
			sum.storeErrs += b.storeErrs
		}
	}
	st.TotalRequests, st.TotalRefreshes = h.m.totalRequests, h.m.totalRefreshes
	upstream, store := h.m.upstream, h.m.store
	h.m.mu.Unlock()

	if sum.requests > 0 {
		st.ErrorRate = float64(sum.errors) / float64(sum.requests)
		st.AverageResponseTime = sum.latency / time.Duration(sum.requests)
	}
	st.OpenAI.Status = depStatus(upstream, 0)
	if sum.mints > 0 {
		st.OpenAI.Latency = sum.mintLatency / time.Duration(sum.mints)
		if st.OpenAI.Status == ServiceOperational &&
			(float64(sum.mintFailures) > 0.2*float64(sum.mints) || st.OpenAI.Latency > slowUpstream) {
			st.OpenAI.Status = ServiceDegraded
		}
	}
	// The allowances live in the session store: rate limiting is as well
	// as the store is.
	st.SessionTracking.Status = depStatus(store, sum.storeErrs)
	if countErr != nil {
		st.SessionTracking.Status = ServiceDown
	} else {
		st.ActiveSessions = active
	}
	st.RateLimit.Status = st.SessionTracking.Status

	st.Status = StatusHealthy
	for _, s := range []string{st.OpenAI.Status, st.RateLimit.Status, st.SessionTracking.Status} {
		switch s {
		case ServiceDown:
			st.Status = StatusUnhealthy
		case ServiceDegraded:
			if st.Status == StatusHealthy {
				st.Status = StatusDegraded
			}
		}
	}
	if st.Status == StatusHealthy && st.ErrorRate > 0.05 {
		st.Status = StatusDegraded
	}
	return st
}

func (h *Handler) serveHealth(w http.ResponseWriter, r *http.Request) {
	_, forwardedTLS := h.ips.clientAddr(r)
	tls := r.TLS != nil || forwardedTLS
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header()["Allow"] = hdrAllowGET
		writeError(w, tls, errorTable[refMethod], 0)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), statsTimeout)
	defer cancel()
	body := healthBody(h.stats(ctx))
	setSecurityHeaders(w.Header(), tls)
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
}

type healthService struct {
	Status  string   `json:"status"`
	Latency *float64 `json:"latency,omitempty"`
}

func healthBody(st Stats) []byte {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	lat := ms(st.OpenAI.Latency)
	v := struct {
		Status    string                   `json:"status"`
		Timestamp int64                    `json:"timestamp"`
		Uptime    int64                    `json:"uptime"`
		Services  map[string]healthService `json:"services"`
		Metrics   map[string]any           `json:"metrics"`
	}{
		Status:    st.Status,
		Timestamp: st.Time.UnixMilli(),
		Uptime:    st.Uptime.Milliseconds(),
		Services: map[string]healthService{
			"openaiApi":       {Status: st.OpenAI.Status, Latency: &lat},
			"rateLimit":       {Status: st.RateLimit.Status},
			"sessionTracking": {Status: st.SessionTracking.Status},
		},
		Metrics: map[string]any{
			"totalRequests":       st.TotalRequests,
			"activeSessions":      st.ActiveSessions,
			"totalRefreshes":      st.TotalRefreshes,
			"errorRate":           st.ErrorRate,
			"averageResponseTime": ms(st.AverageResponseTime),
		},
	}
	b, _ := json.Marshal(v)
	return b
}

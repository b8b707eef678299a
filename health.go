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
	statusHealthy   = "healthy"
	statusDegraded  = "degraded"
	statusUnhealthy = "unhealthy"

	serviceOperational = "operational"
	serviceDegraded    = "degraded"
	serviceDown        = "down"
)

// Stats are the numbers the health endpoint reports. Windowed figures cover
// the last five minutes.
type Stats struct {
	// Status is the worst of the services: "unhealthy" when one is down,
	// "degraded" when one is degraded, when more than 5% of the window's
	// requests failed with a 5xx or when the store holds more than 90% of
	// its capacity, "healthy" otherwise.
	Status string
	Time   time.Time
	Uptime time.Duration
	// Draining reports that Close was called: token and refresh requests
	// are refused, and the health endpoint answers 503 whatever Status says.
	Draining bool

	OpenAI ServiceHealth
	// RateLimit is the state of the allowances, which the session store
	// keeps: the store's.
	RateLimit       ServiceHealth
	SessionTracking ServiceHealth

	// TotalRequests counts token, refresh and call requests (POST and
	// DELETE of a relayed call) since New.
	TotalRequests int64
	// ActiveSessions is the session store's count of live sessions, or -1
	// when the store could not count them (it is down): never a 0 that
	// reads as "fine, and empty".
	ActiveSessions int
	// MaxSessions is the cap on live sessions (Limits.MaxSessions).
	MaxSessions int
	// UpstreamBurst is the upstream budget's burst (Limits.UpstreamBurst), 0
	// without a budget; UpstreamTokens is how many mints it would admit at
	// once now (0..UpstreamBurst): 0 means saturated, upstream_busy.
	UpstreamBurst  int
	UpstreamTokens float64
	// ActiveCalls is the call registry's count of live relayed calls, or
	// -1 when the registry could not count them.
	ActiveCalls int
	// TotalRefreshes counts successful refreshes since New.
	TotalRefreshes int64
	// ErrorRate is the share of token, refresh and call requests answered with a
	// 5xx over the window (0 with no requests).
	ErrorRate float64
	// AverageResponseTime is their mean handling time over the window.
	AverageResponseTime time.Duration
}

// ServiceHealth is one dependency's state, judged from the handler's own
// recent calls to it (no probe, so no paid upstream call).
type ServiceHealth struct {
	// Status is "operational", "degraded" (a recent failure, or for OpenAI
	// more than 20% of the window's mints failed or their mean latency is
	// over 3s; for the session store, more than 90% full) or "down" (3
	// failures in a row, or the store could not count).
	Status string
	// Latency is the mean latency of the window's calls (upstream only).
	Latency time.Duration
}

// metricsWindow is the span of the windowed health figures.
const metricsWindow = 5 * time.Minute

const (
	bucketSpan = 10 * time.Second
	numBuckets = int(metricsWindow / bucketSpan)
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
		return serviceDown
	case d.consecutive > 0 || windowFailures > 0:
		return serviceDegraded
	}
	return serviceOperational
}

// statsTimeout bounds the session store's Count in Stats and health.
const statsTimeout = 2 * time.Second

// snapshotAge is how long the health endpoint reuses the store's count: a
// flood of health requests reads the store at most once a second.
const snapshotAge = time.Second

// Stats returns the figures the health endpoint reports, with a fresh count
// from the session store (two-second deadline). The health endpoint itself
// reuses a count up to a second old.
func (h *Handler) Stats() Stats {
	ctx, cancel := context.WithTimeout(context.Background(), statsTimeout)
	defer cancel()
	now := h.now()
	active, err := h.count(ctx, now)
	st := h.statsWith(now, active, err)
	st.ActiveCalls = h.calls.count(ctx, now)
	return st
}

func (h *Handler) count(ctx context.Context, now time.Time) (int, error) {
	active, err := h.store.Count(ctx, now)
	// A successful count is a sign of life too: without it, a store that
	// failed three health checks stayed "down" after it recovered, until a
	// token request happened to use it.
	h.m.storeResult(now, err == nil)
	return active, err
}

// countSnapshot is the store's count as the health endpoint last read it.
type countSnapshot struct {
	mu       sync.Mutex
	valid    bool
	at       time.Time
	active   int
	err      error
	inflight chan struct{} // closed when the count under way is done
}

// snapshotCount returns the store's count, read within snapshotAge of now
// (see fresh). One caller reads the store while the others wait for its answer, so
// a thousand concurrent health requests make one Count. The count runs
// with the request's values but not its cancellation (a waiter's answer
// must not fail because the first caller left), within statsTimeout.
func (h *Handler) snapshotCount(ctx context.Context, now time.Time) (int, error) {
	return h.snap.get(ctx, now, h.count)
}

// fresh reports whether a count read at "at" may answer for now: within
// snapshotAge of it on either side. A request whose clock reading is a
// little older than the snapshot (it read the clock, then another request
// counted first) is served the snapshot, rather than reading the store
// again and moving the snapshot's time back; only a clock that stepped
// back by more than snapshotAge reads again.
func fresh(at, now time.Time) bool {
	d := now.Sub(at)
	return d < snapshotAge && d > -snapshotAge
}

// get returns count's answer, read within snapshotAge of now (see
// snapshotCount and fresh).
func (c *countSnapshot) get(ctx context.Context, now time.Time, count func(context.Context, time.Time) (int, error)) (int, error) {
	for {
		c.mu.Lock()
		if c.valid && fresh(c.at, now) {
			active, err := c.active, c.err
			c.mu.Unlock()
			return active, err
		}
		if wait := c.inflight; wait != nil {
			c.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
		done := make(chan struct{})
		c.inflight = done
		c.mu.Unlock()

		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), statsTimeout)
		active, err := count(cctx, now)
		cancel()

		c.mu.Lock()
		c.valid, c.at, c.active, c.err, c.inflight = true, now, active, err, nil
		c.mu.Unlock()
		close(done)
		return active, err
	}
}

// sessionCapacity is the cap on live sessions (Limits.MaxSessions).
func (h *Handler) sessionCapacity() int { return h.cfg.lim.MaxSessions }

// statsWith computes the figures, given the store's count (or its failure).
func (h *Handler) statsWith(now time.Time, active int, countErr error) Stats {
	st := Stats{Time: now, Uptime: now.Sub(h.start), Draining: h.closed.Load(), MaxSessions: h.sessionCapacity()}
	if h.upstream != nil {
		st.UpstreamBurst = h.upstream.burst()
		st.UpstreamTokens = max(h.upstream.tokensAt(now), 0)
	}
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
		if st.OpenAI.Status == serviceOperational &&
			(float64(sum.mintFailures) > 0.2*float64(sum.mints) || st.OpenAI.Latency > slowUpstream) {
			st.OpenAI.Status = serviceDegraded
		}
	}
	st.SessionTracking.Status = depStatus(store, sum.storeErrs)
	st.ActiveSessions = active
	if countErr != nil {
		st.SessionTracking.Status = serviceDown
		st.ActiveSessions = -1
	} else if st.MaxSessions > 0 && active*10 > st.MaxSessions*9 && st.SessionTracking.Status == serviceOperational {
		st.SessionTracking.Status = serviceDegraded // over 90% full
	}
	// The allowances live in the session store.
	st.RateLimit.Status = st.SessionTracking.Status

	st.Status = overallStatus(st)
	return st
}

// overallStatus is st's status from its services' and its error rate:
// unhealthy when a service is down, degraded when one is degraded or over
// 5% of the recent requests failed, else healthy.
func overallStatus(st Stats) string {
	status := statusHealthy
	for _, s := range []string{st.OpenAI.Status, st.RateLimit.Status, st.SessionTracking.Status} {
		switch s {
		case serviceDown:
			status = statusUnhealthy
		case serviceDegraded:
			if status == statusHealthy {
				status = statusDegraded
			}
		}
	}
	if status == statusHealthy && st.ErrorRate > 0.05 {
		status = statusDegraded
	}
	return status
}

func (h *Handler) serveHealth(w http.ResponseWriter, r *http.Request) {
	tls, done := h.readPrelude(w, r)
	if done {
		return
	}
	now := h.now()
	active, err := h.snapshotCount(r.Context(), now)
	st := h.statsWith(now, active, err)
	st.ActiveCalls = h.calls.snapshotCount(r.Context(), now)
	body := healthBody(st)
	setSecurityHeaders(w.Header(), tls)
	status := http.StatusOK
	if st.Status == statusUnhealthy || st.Draining {
		status = http.StatusServiceUnavailable
	}
	w.WriteHeader(status)
	if r.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
}

// readPrelude runs what the health and compatibility endpoints share: the
// method (GET, HEAD, and OPTIONS for CORS), the preflight, and CORS headers
// on an allowed origin's request. A refused origin's GET is still answered
// (health is for machines too) but without CORS headers, so that its page
// cannot read it; its preflight is 403 origin_not_allowed. Neither is a
// strike or an event: these endpoints admit nothing. done reports that the
// answer was written.
func (h *Handler) readPrelude(w http.ResponseWriter, r *http.Request) (tls, done bool) {
	_, forwardedTLS := h.ips.clientAddr(r)
	tls = r.TLS != nil || forwardedTLS
	hd := w.Header()
	origin := r.Header.Get("Origin")
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodOptions:
		if origin == "" || r.Header.Get("Access-Control-Request-Method") == "" {
			hd["Allow"] = hdrAllowGETOptions
			hd["Cache-Control"] = hdrNoStore
			w.WriteHeader(http.StatusNoContent)
			return tls, true
		}
		if !h.origins.allowed(origin) {
			hd["Vary"] = hdrVaryOrigin
			writeError(w, tls, errorTable[refOrigin], 0)
			return tls, true
		}
		hd["Cache-Control"] = hdrNoStore
		hd["X-Content-Type-Options"] = hdrNosniff
		h.readCORS.HandlerFunc(w, r) // writes 204 with the CORS headers
		return tls, true
	default:
		hd["Allow"] = hdrAllowGETOptions
		writeError(w, tls, errorTable[refMethod], 0)
		return tls, true
	}
	h.readCORS.HandlerFunc(w, r) // CORS headers for an allowed origin, Vary: Origin always
	return tls, false
}

var hdrAllowGETOptions = []string{"GET, HEAD, OPTIONS"}

type healthService struct {
	Status  string   `json:"status"`
	Latency *float64 `json:"latency,omitempty"`
}

// healthBody is the original service's health answer. Times are in
// milliseconds: timestamp since the Unix epoch, uptime since New, latency
// and averageResponseTime as means over the window (fractional).
func healthBody(st Stats) []byte {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	lat := ms(st.OpenAI.Latency)
	var active any = st.ActiveSessions
	if st.ActiveSessions < 0 {
		active = nil // unknown: the store is down
	}
	var calls any = st.ActiveCalls
	if st.ActiveCalls < 0 {
		calls = nil // unknown: the call registry is down
	}
	v := struct {
		Status    string                   `json:"status"`
		Timestamp int64                    `json:"timestamp"`
		Uptime    int64                    `json:"uptime"`
		Draining  bool                     `json:"draining,omitempty"`
		Services  map[string]healthService `json:"services"`
		Metrics   map[string]any           `json:"metrics"`
	}{
		Status:    st.Status,
		Timestamp: st.Time.UnixMilli(),
		Uptime:    st.Uptime.Milliseconds(),
		Draining:  st.Draining,
		Services: map[string]healthService{
			"openaiApi":       {Status: st.OpenAI.Status, Latency: &lat},
			"rateLimit":       {Status: st.RateLimit.Status},
			"sessionTracking": {Status: st.SessionTracking.Status},
		},
		Metrics: map[string]any{
			"totalRequests":       st.TotalRequests,
			"activeSessions":      active,
			"activeCalls":         calls,
			"totalRefreshes":      st.TotalRefreshes,
			"errorRate":           st.ErrorRate,
			"averageResponseTime": ms(st.AverageResponseTime),
		},
	}
	b, _ := json.Marshal(v)
	return b
}

package realtimeauth_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func health(t *testing.T, h http.Handler) map[string]any {
	t.Helper()
	w := serveReq(h, req{method: http.MethodGet, path: healthU, headers: map[string]string{"Origin": "https://anywhere.example"}})
	require.Equal(t, http.StatusOK, w.Code)
	assertSecurityHeaders(t, w.Header(), false)
	return jsonBody(t, w.Body.Bytes())
}

func metric(m map[string]any, name string) any { return m["metrics"].(map[string]any)[name] }

func service(m map[string]any, name string) string {
	return m["services"].(map[string]any)[name].(map[string]any)["status"].(string)
}

func TestHealthShapeAndCounts(t *testing.T) {
	r := newRig(t, realtimeauth.WithRefreshPolicy(10, 0))
	r.clock.Advance(1500 * time.Millisecond)
	m := health(t, r.h)
	assert.Equal(t, "healthy", m["status"])
	assert.Equal(t, float64(r.clock.Now().UnixMilli()), m["timestamp"])
	assert.Equal(t, float64(1500), m["uptime"])
	for _, s := range []string{"openaiApi", "rateLimit", "sessionTracking"} {
		assert.Equal(t, "operational", service(m, s), s)
	}
	assert.Equal(t, map[string]any{
		"totalRequests": float64(0), "activeSessions": float64(0), "totalRefreshes": float64(0),
		"errorRate": float64(0), "averageResponseTime": float64(0),
	}, m["metrics"])

	// Mints take 200ms of the fake clock.
	r.mint.Func = func(_ context.Context, q realtimeauth.MintRequest) (realtimeauth.Token, error) {
		r.clock.Advance(200 * time.Millisecond)
		return realtimeauth.Token{Value: "ek_x", ExpiresAt: r.clock.Now().Add(q.TTL)}, nil
	}
	a := issueToken(t, r.h, defaultRemote)["sessionId"].(string)
	issueToken(t, r.h, "198.51.100.2:1")
	for range 3 {
		require.Equal(t, 200, serveReq(r.h, req{path: refrURL, body: refreshBody(a)}).Code)
	}
	serveReq(r.h, req{path: refrURL, body: refreshBody("nope")})                                  // 400, no mint
	serveReq(r.h, req{method: http.MethodGet, path: healthU})                                     // not counted
	serveReq(r.h, req{path: base + "/elsewhere"})                                                 // not counted
	serveReq(r.h, req{path: tokenURL, headers: map[string]string{"Origin": "https://x.example"}}) // 403
	m = health(t, r.h)
	assert.Equal(t, float64(7), metric(m, "totalRequests"))
	assert.Equal(t, float64(3), metric(m, "totalRefreshes"))
	assert.Equal(t, float64(2), metric(m, "activeSessions"))
	assert.Equal(t, float64(0), metric(m, "errorRate"))
	assert.InDelta(t, 5*200.0/7, metric(m, "averageResponseTime"), 0.001)
	lat := m["services"].(map[string]any)["openaiApi"].(map[string]any)["latency"]
	assert.Equal(t, float64(200), lat)

	st := r.h.Stats()
	assert.Equal(t, int64(7), st.TotalRequests)
	assert.Equal(t, 200*time.Millisecond, st.OpenAI.Latency)

	// HEAD answers without a body.
	w := serveReq(r.h, req{method: http.MethodHead, path: healthU})
	assert.Equal(t, http.StatusOK, w.Code)
	assert.Empty(t, w.Body.Bytes())
}

// TestHealthErrorRateWindow: errorRate is the 5xx share over the last five
// minutes; older requests fall out as the clock moves.
func TestHealthErrorRateWindow(t *testing.T) {
	r := newRig(t)
	issueToken(t, r.h, "198.51.100.1:1")
	serveReq(r.h, req{path: refrURL}) // 400: not an error of ours
	r.mint.SetError(&realtimeauth.UpstreamError{StatusCode: 500})
	serveReq(r.h, req{path: tokenURL, remote: "198.51.100.2:1"})
	r.mint.SetError(nil)
	issueToken(t, r.h, "198.51.100.3:1")
	m := health(t, r.h)
	assert.Equal(t, 0.25, metric(m, "errorRate"))
	assert.Equal(t, "degraded", service(m, "openaiApi"), "a failure in the window")
	assert.Equal(t, "degraded", m["status"])

	r.clock.Advance(4*time.Minute + 50*time.Second)
	issueToken(t, r.h, "198.51.100.4:1")
	assert.Equal(t, 0.2, metric(health(t, r.h), "errorRate"))

	r.clock.Advance(10 * time.Second) // the first four are now five minutes old
	m = health(t, r.h)
	assert.Equal(t, float64(0), metric(m, "errorRate"))
	assert.Equal(t, float64(5), metric(m, "totalRequests"), "totals are not windowed")
	assert.Equal(t, "operational", service(m, "openaiApi"))
	assert.Equal(t, "healthy", m["status"])
}

// TestHealthUpstreamStatus: operational, degraded, down, from the mints'
// outcomes and latency.
func TestHealthUpstreamStatus(t *testing.T) {
	r := newRig(t, realtimeauth.WithRateLimit(100, time.Minute), realtimeauth.WithAbuseGuard(nil))
	for range 3 {
		issueToken(t, r.h, defaultRemote)
	}
	assert.Equal(t, "operational", service(health(t, r.h), "openaiApi"))

	r.mint.SetError(&realtimeauth.UpstreamError{StatusCode: 502})
	serveReq(r.h, req{path: tokenURL})
	m := health(t, r.h)
	assert.Equal(t, "degraded", service(m, "openaiApi"))
	assert.Equal(t, "degraded", m["status"])
	serveReq(r.h, req{path: tokenURL})
	serveReq(r.h, req{path: tokenURL})
	m = health(t, r.h)
	assert.Equal(t, "down", service(m, "openaiApi"), "three failures in a row")
	assert.Equal(t, "unhealthy", m["status"])

	r.mint.SetError(nil)
	issueToken(t, r.h, defaultRemote)
	m = health(t, r.h)
	assert.Equal(t, "degraded", service(m, "openaiApi"), "3 of 7 mints failed in the window")
	r.clock.Advance(realtimeauth.MetricsWindow)
	issueToken(t, r.h, defaultRemote)
	assert.Equal(t, "operational", service(health(t, r.h), "openaiApi"))

	// Slow mints degrade it too.
	r.mint.Func = func(_ context.Context, q realtimeauth.MintRequest) (realtimeauth.Token, error) {
		r.clock.Advance(5 * time.Second)
		return realtimeauth.Token{Value: "ek_slow", ExpiresAt: r.clock.Now().Add(q.TTL)}, nil
	}
	for range 3 {
		issueToken(t, r.h, defaultRemote)
	}
	assert.Equal(t, "degraded", service(health(t, r.h), "openaiApi"))
}

// TestHealthStoreDown: a store whose Count fails makes health unhealthy.
func TestHealthStoreDown(t *testing.T) {
	store := &countingStore{SessionStore: realtimeauth.NewMemoryStore()}
	r := newRig(t, realtimeauth.WithSessionStore(store))
	issueToken(t, r.h, defaultRemote)
	assert.Equal(t, float64(1), metric(health(t, r.h), "activeSessions"))
	store.failCount.Store(true)
	m := health(t, r.h)
	assert.Equal(t, "unhealthy", m["status"])
	assert.Equal(t, "down", service(m, "sessionTracking"))
	assert.Equal(t, float64(0), metric(m, "activeSessions"))
	health(t, r.h)
	health(t, r.h)
	store.failCount.Store(false)
	// Recovered: the failures are still in the window, but it is no
	// longer down.
	m = health(t, r.h)
	assert.Equal(t, "degraded", m["status"])
	assert.Equal(t, "degraded", service(m, "sessionTracking"))
	assert.Equal(t, float64(1), metric(m, "activeSessions"))
	r.clock.Advance(realtimeauth.MetricsWindow)
	assert.Equal(t, "healthy", health(t, r.h)["status"])
}

// TestHealthAfterClose: health keeps answering once the handler is closed.
func TestHealthAfterClose(t *testing.T) {
	r := newRig(t)
	require.NoError(t, r.h.Close())
	assert.Equal(t, "healthy", health(t, r.h)["status"])
}

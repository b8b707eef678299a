package realtimeauth_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/realtimeauth/realtimeauth"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// newSessionAt opens a session for the client at remote.
func newSessionAt(t *testing.T, r *rig, remote string) string {
	t.Helper()
	return issueToken(t, r.h, remote)["sessionId"].(string)
}

func TestTokenSuccessShape(t *testing.T) {
	r := newRig(t, realtimeauth.WithLimits(realtimeauth.Limits{TokenTTL: 90 * time.Second}))
	// The upstream's expiry is not a whole number of seconds away:
	// expiresIn rounds down.
	r.mint.Func = func(_ context.Context, req realtimeauth.MintRequest) (realtimeauth.Token, error) {
		return realtimeauth.Token{Value: "ek_abc", ExpiresAt: r.clock.Now().Add(req.TTL - 300*time.Millisecond)}, nil
	}
	w := serveReq(r.h, req{path: tokenURL, body: `{"model":"x","voice":"alloy"}`, headers: map[string]string{"Origin": origin}})
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	assertSecurityHeaders(t, w.Header(), false)
	m := jsonBody(t, w.Body.Bytes())
	assert.Equal(t, true, m["success"])
	assert.Equal(t, "ek_abc", m["token"])
	assert.Equal(t, float64(t0.Add(90*time.Second-300*time.Millisecond).UnixMilli()), m["expiresAt"])
	assert.Equal(t, float64(89), m["expiresIn"])
	assert.Equal(t, float64(t0.UnixMilli()), m["serverTime"])
	id, _ := m["sessionId"].(string)
	u, err := uuid.Parse(id)
	require.NoError(t, err)
	assert.Equal(t, uuid.Version(4), u.Version())
	assert.Equal(t, uuid.RFC4122, u.Variant())
	assert.Equal(t, u.String(), id, "canonical lower-case form")
	assert.Equal(t, "realtime", m["mode"])
	assert.NotContains(t, m, "model", "the fake minter names no model")
	assert.Len(t, m, 7)

	reqs := r.mint.Requests()
	require.Len(t, reqs, 1)
	assert.Equal(t, id, reqs[0].SessionID)
	assert.Equal(t, "203.0.113.7", reqs[0].ClientIP)
	assert.Equal(t, 90*time.Second, reqs[0].TTL)
	assert.Nil(t, reqs[0].Session, "the body's fields are ignored")

	// Two sessions never share an ID.
	other := issueToken(t, r.h, defaultRemote)["sessionId"]
	assert.NotEqual(t, id, other)
}

func TestRefreshSuccessShape(t *testing.T) {
	r := newRig(t)
	first := issueToken(t, r.h, defaultRemote)
	id := first["sessionId"].(string)
	r.clock.Advance(10 * time.Second) // exactly the minimum interval
	w := serveReq(r.h, req{path: refrURL, body: `{"sessionId":"` + id + `","extra":[1,2]}`, headers: map[string]string{"Origin": origin}})
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	assertSecurityHeaders(t, w.Header(), false)
	m := jsonBody(t, w.Body.Bytes())
	assert.Equal(t, true, m["success"])
	assert.Equal(t, id, m["sessionId"])
	assert.Equal(t, "ek_test_2", m["token"])
	assert.NotEqual(t, first["token"], m["token"])
	assert.Equal(t, float64(t0.Add(10*time.Second).UnixMilli()), m["serverTime"])
	assert.Equal(t, float64(t0.Add(70*time.Second).UnixMilli()), m["expiresAt"])
	assert.Equal(t, float64(60), m["expiresIn"])
	assert.Equal(t, id, r.mint.Requests()[1].SessionID)
}

// TestSecurityHeadersEverywhere: success and error JSON answers carry the
// headers; HSTS only over TLS, directly or at a trusted proxy.
func TestSecurityHeadersEverywhere(t *testing.T) {
	r := newRig(t, realtimeauth.WithTrustedProxies("10.0.0.0/8"))
	for _, q := range []req{
		{path: tokenURL},
		{path: refrURL},
		{path: base + "/nope"},
		{method: http.MethodGet, path: healthU},
		{method: http.MethodGet, path: tokenURL},
	} {
		w := serveReq(r.h, q)
		assertSecurityHeaders(t, w.Header(), false)

		// X-Forwarded-Proto counts only from a trusted proxy.
		q.headers = map[string]string{"X-Forwarded-Proto": "https"}
		w = serveReq(r.h, q)
		assertSecurityHeaders(t, w.Header(), false)
		q.remote = "10.1.2.3:80"
		w = serveReq(r.h, q)
		assertSecurityHeaders(t, w.Header(), true)
	}

	srv := httptest.NewTLSServer(r.h)
	t.Cleanup(srv.Close)
	for _, u := range []string{tokenURL, base + "/nope"} {
		resp, err := srv.Client().Post(srv.URL+u, "", nil)
		require.NoError(t, err)
		resp.Body.Close()
		assertSecurityHeaders(t, resp.Header, true)
	}
	resp, err := srv.Client().Get(srv.URL + healthU)
	require.NoError(t, err)
	resp.Body.Close()
	assertSecurityHeaders(t, resp.Header, true)
}

// TestFailedMintGivesBackTheRefresh: a refresh whose mint fails uses up
// neither a refresh nor the interval.
func TestFailedMintGivesBackTheRefresh(t *testing.T) {
	r := newRig(t, realtimeauth.WithLimits(realtimeauth.Limits{MaxRefreshes: 1, MinRefreshInterval: 10 * time.Second}))
	id := issueToken(t, r.h, defaultRemote)["sessionId"].(string)
	r.clock.Advance(10 * time.Second)
	r.mint.SetError(&realtimeauth.UpstreamError{StatusCode: 500})
	for range 3 {
		assertError(t, serveReq(r.h, req{path: refrURL, body: refreshBody(id)}), 502, "upstream_error", 0)
	}
	r.mint.SetError(nil)
	// At once: neither the interval nor the single refresh was used up.
	w := serveReq(r.h, req{path: refrURL, body: refreshBody(id)})
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	r.clock.Advance(time.Minute)
	assertError(t, serveReq(r.h, req{path: refrURL, body: refreshBody(id)}), 403, "refresh_limit_reached", 0)
	assert.Equal(t, int64(1), r.h.Stats().TotalRefreshes)
}

// TestFailedMintDropsTheSession: a token request whose mint fails leaves no
// session behind.
func TestFailedMintDropsTheSession(t *testing.T) {
	r := newRig(t)
	r.mint.SetError(&realtimeauth.UpstreamError{StatusCode: 503})
	assertError(t, serveReq(r.h, req{path: tokenURL}), 502, "upstream_error", 0)
	assert.Equal(t, 0, r.h.Stats().ActiveSessions)
	id := r.mint.Requests()[0].SessionID
	require.NotEmpty(t, id)
	assertError(t, serveReq(r.h, req{path: refrURL, body: refreshBody(id)}), 404, "session_not_found", 0)
}

// TestUpstreamMessageNotEchoed: whatever the upstream said stays out of
// the answer.
func TestUpstreamMessageNotEchoed(t *testing.T) {
	const key = "sk-proj-FAKEKEY0123456789"
	for _, status := range []int{400, 401, 403, 429, 500} {
		r := newRig(t)
		r.mint.SetError(&realtimeauth.UpstreamError{StatusCode: status, Message: "Incorrect API key provided: " + key + " org-secret"})
		w := serveReq(r.h, req{path: tokenURL})
		assert.GreaterOrEqual(t, w.Code, 500)
		assert.NotContains(t, w.Body.String(), key)
		assert.NotContains(t, w.Body.String(), "org-secret")
		assert.NotContains(t, w.Body.String(), "Incorrect")
	}
}

// TestClientGone: a client that goes away during the mint is not an
// upstream failure.
func TestClientGone(t *testing.T) {
	r := newRig(t)
	ctx, cancel := context.WithCancel(context.Background())
	r.mint.Func = func(context.Context, realtimeauth.MintRequest) (realtimeauth.Token, error) {
		cancel()
		return realtimeauth.Token{}, context.Canceled
	}
	w := httptest.NewRecorder()
	r.h.ServeHTTP(w, req{path: tokenURL}.build().WithContext(ctx))
	assert.Equal(t, 499, w.Code)
	assert.Equal(t, "operational", r.h.Stats().OpenAI.Status)
}

// TestConcurrentTokenAdmission: N concurrent token requests from one IP
// under a limit of L admit exactly L, over real TCP.
func TestConcurrentTokenAdmission(t *testing.T) {
	const n, limit = 60, 17
	r := newRig(t, realtimeauth.WithLimits(realtimeauth.Limits{Sessions: realtimeauth.Rate{N: limit, Per: time.Minute}}), realtimeauth.WithAbuseGuard(nil))
	srv := tcpServer(t, r.h)
	c := clientFrom("127.0.0.2")
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for range n {
		wg.Go(func() {
			resp, err := c.Post(srv.URL+tokenURL, "", nil)
			if !assert.NoError(t, err) {
				return
			}
			resp.Body.Close()
			mu.Lock()
			codes[resp.StatusCode]++
			mu.Unlock()
		})
	}
	wg.Wait()
	assert.Equal(t, map[int]int{200: limit, 429: n - limit}, codes)
	assert.Equal(t, limit, r.mint.Calls())
	// Another peer has its own limit.
	st, _, _ := post(t, clientFrom("127.0.0.3"), srv.URL+tokenURL, "", nil)
	assert.Equal(t, 200, st)
}

// TestConcurrentRefreshAdmission: N concurrent refreshes of one session
// admit exactly what the policy allows.
func TestConcurrentRefreshAdmission(t *testing.T) {
	const n = 50
	for _, tc := range []struct {
		name        string
		max         int
		minInterval time.Duration
		want        int
	}{
		{"count bound", 13, -1, 13}, // no minimum interval
		{"interval bound", 120, 10 * time.Second, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, realtimeauth.WithLimits(realtimeauth.Limits{MaxRefreshes: tc.max, MinRefreshInterval: tc.minInterval}))
			id := issueToken(t, r.h, defaultRemote)["sessionId"].(string)
			r.clock.Advance(max(tc.minInterval, 0))
			var wg sync.WaitGroup
			var mu sync.Mutex
			codes := map[string]int{}
			for range n {
				wg.Go(func() {
					w := serveReq(r.h, req{path: refrURL, body: refreshBody(id)})
					code := "ok"
					if w.Code != 200 {
						code = jsonBody(t, w.Body.Bytes())["code"].(string)
					}
					mu.Lock()
					codes[code]++
					mu.Unlock()
				})
			}
			wg.Wait()
			want := map[string]int{"ok": tc.want}
			if tc.minInterval > 0 {
				want["refresh_too_soon"] = n - tc.want
			} else {
				want["refresh_limit_reached"] = n - tc.want
			}
			assert.Equal(t, want, codes)
			assert.Equal(t, 1+tc.want, r.mint.Calls())
			assert.Equal(t, int64(tc.want), r.h.Stats().TotalRefreshes)
		})
	}
}

// TestContentTypes: a JSON body with parameters is fine; a body without a
// JSON media type is 415, and an empty body needs none.
func TestContentTypes(t *testing.T) {
	r := newRig(t)
	for _, ct := range []string{"application/json; charset=utf-8", "Application/JSON"} {
		assert.Equal(t, http.StatusOK, serveReq(r.h, req{path: tokenURL, body: `{}`, ct: ct}).Code, ct)
	}
	q := req{path: tokenURL, body: `{}`}.build()
	q.Header.Del("Content-Type")
	w := httptest.NewRecorder()
	r.h.ServeHTTP(w, q)
	assertError(t, w, 415, "unsupported_media_type", 0)
	assert.Equal(t, http.StatusOK, serveReq(r.h, req{path: tokenURL, ct: "text/plain"}).Code, "no body, no type needed")
}

// TestConcurrentFailedRefreshesGiveBack: when every mint fails, concurrent
// refreshes give every reservation back, whatever their interleaving.
func TestConcurrentFailedRefreshesGiveBack(t *testing.T) {
	const m = 5
	r := newRig(t, realtimeauth.WithLimits(realtimeauth.Limits{
		MaxRefreshes:       m,
		MinRefreshInterval: -1,
		Mints:              realtimeauth.Rate{N: 100, Per: time.Minute},
	}))
	id := issueToken(t, r.h, defaultRemote)["sessionId"].(string)
	r.mint.SetError(&realtimeauth.UpstreamError{StatusCode: 500})
	var wg sync.WaitGroup
	for range 40 {
		wg.Go(func() {
			w := serveReq(r.h, req{path: refrURL, body: refreshBody(id)})
			assert.Contains(t, []int{502, 403}, w.Code)
		})
	}
	wg.Wait()
	r.mint.SetError(nil)
	for i := range m {
		assert.Equal(t, 200, serveReq(r.h, req{path: refrURL, body: refreshBody(id)}).Code, "refresh %d", i)
	}
	assertError(t, serveReq(r.h, req{path: refrURL, body: refreshBody(id)}), 403, "refresh_limit_reached", 0)
}

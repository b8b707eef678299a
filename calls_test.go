package realtimeauth_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/calls"
	"github.com/realtimeauth/realtimeauth/realtimeauthtest"
)

const callsURL = base + "/calls"

// callRig is a handler with the OpenAI minter against the fake upstream,
// on a fake clock with timers.
type callRig struct {
	h      *realtimeauth.Handler
	up     *realtimeauthtest.Upstream
	clock  *realtimeauthtest.TimerClock
	events *realtimeauthtest.Events
	minter callMinter
}

func newCallRig(t *testing.T, opts ...realtimeauth.Option) *callRig {
	t.Helper()
	up := &realtimeauthtest.Upstream{Key: fakeKey}
	srv := httptest.NewServer(up)
	t.Cleanup(srv.Close)
	r := &callRig{
		up:     up,
		clock:  realtimeauthtest.NewTimerClock(realtimeauthtest.NewClock(t0)),
		events: &realtimeauthtest.Events{},
		minter: newCallMinter(t, srv.URL+"/v1", realtimeauth.OpenAIConfig{Logger: quietLogger(),
			Session: json.RawMessage(`{"instructions":"be brief"}`)}),
	}
	r.h = r.newHandler(t, opts...)
	return r
}

// newHandler is another handler (an instance) on the rig's upstream, clock
// and event recorder.
func (r *callRig) newHandler(t *testing.T, opts ...realtimeauth.Option) *realtimeauth.Handler {
	t.Helper()
	all := append([]realtimeauth.Option{
		realtimeauth.WithClock(r.clock.Now),
		realtimeauth.WithTimer(r.clock.AfterFunc),
		realtimeauth.WithAllowedOrigins(origin),
		realtimeauth.WithLogger(quietLogger()),
		realtimeauth.WithEventHook(r.events.Hook),
	}, opts...)
	h, err := realtimeauth.New(r.minter, all...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// call posts the test offer to h from remote.
func call(h http.Handler, remote string, headers map[string]string) *httptest.ResponseRecorder {
	return serveReq(h, req{path: callsURL, body: testOffer, ct: "application/sdp", remote: remote, headers: headers})
}

// placeCall makes a call that must succeed and returns its ID.
func placeCall(t *testing.T, h http.Handler, remote string, headers map[string]string) string {
	t.Helper()
	w := call(h, remote, headers)
	require.Equal(t, http.StatusCreated, w.Code, w.Body.String())
	id, ok := strings.CutPrefix(w.Header().Get("Location"), callsURL+"/")
	require.True(t, ok, w.Header().Get("Location"))
	return id
}

func hangUp(h http.Handler, id, remote string, headers map[string]string) *httptest.ResponseRecorder {
	return serveReq(h, req{method: http.MethodDelete, path: callsURL + "/" + id, remote: remote, headers: headers})
}

func activeCalls(t *testing.T, h *realtimeauth.Handler) int {
	t.Helper()
	n := h.Stats().ActiveCalls
	require.GreaterOrEqual(t, n, 0, "the registry's count failed")
	return n
}

func TestCallRelay(t *testing.T) {
	r := newCallRig(t)
	w := call(r.h, "", map[string]string{"Origin": origin, "Authorization": "Bearer ek_ignored", "X-OpenAI-Agents-SDK": "openai-agents-sdk.0.20.0"})
	require.Equal(t, http.StatusCreated, w.Code, w.Body.String())
	placed := r.up.Calls()
	require.Len(t, placed, 1)
	up := placed[0]
	assert.Equal(t, callsURL+"/"+up.ID, w.Header().Get("Location"))
	assert.Equal(t, "application/sdp", w.Header().Get("Content-Type"))
	assert.Equal(t, realtimeauthtest.AnswerSDP(testOffer), w.Body.String())
	assert.Equal(t, origin, w.Header().Get("Access-Control-Allow-Origin"))
	assert.Equal(t, "Location", w.Header().Get("Access-Control-Expose-Headers"))
	assert.Equal(t, "no-store", w.Header().Get("Cache-Control"))
	assert.Equal(t, testOffer, up.Offer, "the offer goes upstream as it came")
	assert.JSONEq(t, `{"type":"realtime","model":"gpt-realtime","instructions":"be brief"}`, string(up.Session), "the server's session, with its model")
	assert.Equal(t, "Bearer "+fakeKey, up.Header.Get("Authorization"), "the server's key, not the browser's header")
	assert.NotEmpty(t, up.Header.Get("OpenAI-Safety-Identifier"))
	assert.Equal(t, 1, activeCalls(t, r.h))

	started := r.events.Named(realtimeauth.EventCallStarted)
	require.Len(t, started, 1)
	assert.Equal(t, up.ID, started[0].CallID)
	assert.NotEmpty(t, started[0].SessionID)
	assert.Equal(t, "203.0.113.7", started[0].ClientIP)
}

func TestCallPreflight(t *testing.T) {
	r := newCallRig(t)
	for _, m := range []string{http.MethodPost, http.MethodDelete} {
		path := callsURL
		if m == http.MethodDelete {
			path += "/rtc_x"
		}
		w := serveReq(r.h, req{method: http.MethodOptions, path: path, headers: map[string]string{
			"Origin": origin, "Access-Control-Request-Method": m,
			"Access-Control-Request-Headers": "authorization,content-type,x-openai-agents-sdk",
		}})
		assert.Equal(t, http.StatusNoContent, w.Code, m)
		assert.Equal(t, origin, w.Header().Get("Access-Control-Allow-Origin"), m)
		assert.Equal(t, m, w.Header().Get("Access-Control-Allow-Methods"))
		assert.Equal(t, "authorization,content-type,x-openai-agents-sdk", strings.ToLower(strings.ReplaceAll(w.Header().Get("Access-Control-Allow-Headers"), " ", "")), m)
	}
	w := serveReq(r.h, req{method: http.MethodOptions, path: callsURL, headers: map[string]string{
		"Origin": "https://evil.example", "Access-Control-Request-Method": "POST",
	}})
	assertError(t, w, http.StatusForbidden, realtimeauth.CodeOriginNotAllowed, 0)
	w = call(r.h, "", map[string]string{"Origin": "https://evil.example"})
	assertError(t, w, http.StatusForbidden, realtimeauth.CodeOriginNotAllowed, 0)
	assert.Empty(t, r.up.Calls())
	w = serveReq(r.h, req{method: http.MethodOptions, path: callsURL + "/rtc_x"})
	assert.Equal(t, http.StatusNoContent, w.Code)
	assert.Equal(t, "OPTIONS, DELETE", w.Header().Get("Allow"), "a plain OPTIONS")
	w = serveReq(r.h, req{method: http.MethodGet, path: callsURL})
	assertError(t, w, http.StatusMethodNotAllowed, realtimeauth.CodeMethodNotAllowed, 0)
	assert.Equal(t, "OPTIONS, POST", w.Header().Get("Allow"))
	w = serveReq(r.h, req{method: http.MethodPost, path: callsURL + "/rtc_x"})
	assertError(t, w, http.StatusMethodNotAllowed, realtimeauth.CodeMethodNotAllowed, 0)
	assert.Equal(t, "OPTIONS, DELETE", w.Header().Get("Allow"))
}

func TestCallBadRequests(t *testing.T) {
	r := newCallRig(t, realtimeauth.WithLimits(realtimeauth.Limits{MaxBodyBytes: 1024}))
	for _, c := range []struct {
		name, body, ct string
		status         int
		code           realtimeauth.Code
	}{
		{"json", `{"sdp":"v=0"}`, "application/json", 415, realtimeauth.CodeUnsupportedMediaType},
		{"no type", testOffer, "text/plain", 415, realtimeauth.CodeUnsupportedMediaType},
		{"not SDP", "hello", "application/sdp", 400, realtimeauth.CodeInvalidRequest},
		{"no media", "v=0\r\ns=-\r\n", "application/sdp", 400, realtimeauth.CodeInvalidRequest},
		{"NUL", testOffer + "\x00", "application/sdp", 400, realtimeauth.CodeInvalidRequest},
		{"too large", testOffer + strings.Repeat("a=x\r\n", 300), "application/sdp", 413, realtimeauth.CodePayloadTooLarge},
	} {
		w := serveReq(r.h, req{path: callsURL, body: c.body, ct: c.ct, remote: "198.51.100.9:1"})
		assertError(t, w, c.status, c.code, 0)
	}
	assert.Empty(t, r.up.Calls(), "no bad offer goes upstream")
	assert.Equal(t, 0, activeCalls(t, r.h))
}

func TestCallCaps(t *testing.T) {
	r := newCallRig(t)
	a := placeCall(t, r.h, "", nil)
	placeCall(t, r.h, "", nil)
	w := call(r.h, "", nil)
	assertError(t, w, http.StatusTooManyRequests, realtimeauth.CodeTooManyCalls, 0)
	assert.Len(t, r.up.Calls(), 2, "no upstream call over the cap")
	assert.Equal(t, 1, r.events.Count(realtimeauth.EventTooManyCalls))
	placeCall(t, r.h, "198.51.100.1:1", nil) // another client
	require.Equal(t, http.StatusNoContent, hangUp(r.h, a, "", nil).Code)
	placeCall(t, r.h, "", nil)
	assert.Equal(t, 3, activeCalls(t, r.h))
}

// TestCallRegistryFull: a registry at its total cap refuses the next call
// as the full session store does (429 too_many_sessions), before any
// upstream call, and charges nothing: the call goes through once a slot
// is free.
func TestCallRegistryFull(t *testing.T) {
	reg, err := calls.NewMemoryRegistry(1)
	require.NoError(t, err)
	r := newCallRig(t, realtimeauth.WithCallRegistry(reg))
	id := placeCall(t, r.h, "", nil)
	w := call(r.h, "198.51.100.1:1", nil) // another client, under its own caps
	assertError(t, w, http.StatusTooManyRequests, realtimeauth.CodeTooManySessions, 0)
	assert.Len(t, r.up.Calls(), 1, "no upstream call into a full registry")
	require.Equal(t, http.StatusNoContent, hangUp(r.h, id, "", nil).Code)
	placeCall(t, r.h, "198.51.100.1:1", nil)
	assert.Len(t, r.up.Calls(), 2)
}

func TestCallSubjectCap(t *testing.T) {
	r := newCallRig(t, realtimeauth.WithAuthenticator(bearerSubject), realtimeauth.WithLimits(realtimeauth.Limits{MaxCallsPerSubject: 2}))
	alice := map[string]string{"Authorization": "Bearer alice"}
	placeCall(t, r.h, "198.51.100.1:1", alice)
	placeCall(t, r.h, "198.51.100.2:1", alice)
	assertError(t, call(r.h, "198.51.100.3:1", alice), http.StatusTooManyRequests, realtimeauth.CodeTooManyCalls, 0)
	placeCall(t, r.h, "198.51.100.3:1", map[string]string{"Authorization": "Bearer bob"})
	assertError(t, call(r.h, "198.51.100.4:1", nil), http.StatusUnauthorized, realtimeauth.CodeUnauthorized, 0)
	assert.Len(t, r.up.Calls(), 3)
}

func bearerSubject(r *http.Request) (string, error) {
	s, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || s == "" {
		return "", errors.New("no bearer")
	}
	return s, nil
}

// TestCallCostsAMint: a call is charged as a token request is, and a call
// refused by an allowance leaves no slot behind.
func TestCallCostsAMint(t *testing.T) {
	r := newCallRig(t, realtimeauth.WithLimits(realtimeauth.Limits{Sessions: realtimeauth.Rate{N: 1, Per: time.Minute}}))
	placeCall(t, r.h, "", nil)
	assertError(t, call(r.h, "", nil), http.StatusTooManyRequests, realtimeauth.CodeRateLimited, 60)
	w := serveReq(r.h, req{path: tokenURL})
	assertError(t, w, http.StatusTooManyRequests, realtimeauth.CodeRateLimited, 60)
	r.clock.Advance(time.Minute)
	placeCall(t, r.h, "", nil) // the refused call's slot was released: the cap of 2 has room
	assert.Len(t, r.up.Calls(), 2)

	r = newCallRig(t, realtimeauth.WithLimits(realtimeauth.Limits{UpstreamRate: 1, UpstreamBurst: 1}))
	placeCall(t, r.h, "", nil)
	assertError(t, call(r.h, "198.51.100.1:1", nil), http.StatusServiceUnavailable, realtimeauth.CodeUpstreamBusy, 1)
	assert.Len(t, r.up.Calls(), 1)
	assert.Equal(t, 1, activeCalls(t, r.h))
}

func TestCallUpstreamFailure(t *testing.T) {
	r := newCallRig(t)
	r.up.Fail = func(*http.Request) int { return http.StatusBadRequest }
	w := call(r.h, "", nil)
	assertError(t, w, http.StatusBadGateway, realtimeauth.CodeUpstreamError, 0)
	assert.NotContains(t, w.Body.String(), "fake was told", "the upstream's message is never echoed")
	r.up.Fail = func(*http.Request) int { return http.StatusTooManyRequests }
	assertError(t, call(r.h, "", nil), http.StatusServiceUnavailable, realtimeauth.CodeUpstreamRateLimited, 1)
	assertError(t, call(r.h, "", nil), http.StatusServiceUnavailable, realtimeauth.CodeUpstreamRateLimited, 1)
	r.up.Fail = nil
	placeCall(t, r.h, "", nil) // the failed calls hold no slot
	placeCall(t, r.h, "", nil)
	assert.Equal(t, 2, activeCalls(t, r.h))
	assert.Equal(t, 3, r.events.Count(realtimeauth.EventUpstreamError))
}

// TestCallEventLatency: call_started and a failed call's upstream_error
// carry how long the upstream call took on the handler's clock; a failed
// hang-up, which is no mint, carries none.
func TestCallEventLatency(t *testing.T) {
	r := newCallRig(t)
	status := 0
	r.up.Fail = func(*http.Request) int { r.clock.Advance(250 * time.Millisecond); return status }
	id := placeCall(t, r.h, "", nil)
	status = http.StatusInternalServerError
	assertError(t, hangUp(r.h, id, "", nil), http.StatusBadGateway, realtimeauth.CodeUpstreamError, 0)
	status = http.StatusBadRequest
	assertError(t, call(r.h, "", nil), http.StatusBadGateway, realtimeauth.CodeUpstreamError, 0)
	started := r.events.Named(realtimeauth.EventCallStarted)
	require.Len(t, started, 1)
	assert.Equal(t, 250*time.Millisecond, started[0].Latency)
	var lat []time.Duration
	for _, e := range r.events.Named(realtimeauth.EventUpstreamError) {
		lat = append(lat, e.Latency)
	}
	assert.Equal(t, []time.Duration{0, 250 * time.Millisecond}, lat, "the hang-up's, then the call's")
}

func TestCallRelayUnavailable(t *testing.T) {
	h, err := realtimeauth.New(realtimeauth.NewDevMinter(nil), realtimeauth.WithAllowedOrigins(origin), realtimeauth.WithLogger(quietLogger()))
	require.NoError(t, err)
	defer h.Close()
	w := call(h, "", map[string]string{"Origin": origin})
	assertError(t, w, http.StatusNotImplemented, realtimeauth.CodeRelayUnavailable, 0)
	assert.Equal(t, origin, w.Header().Get("Access-Control-Allow-Origin"), "a page can read the code")
	assertError(t, hangUp(h, "rtc_x", "", nil), http.StatusNotImplemented, realtimeauth.CodeRelayUnavailable, 0)
	assert.Equal(t, http.StatusOK, serveReq(h, req{path: tokenURL}).Code, "tokens still work")
}

func TestCallHangUp(t *testing.T) {
	r := newCallRig(t, realtimeauth.WithAuthenticator(bearerSubject))
	alice := map[string]string{"Authorization": "Bearer alice"}
	id := placeCall(t, r.h, "", alice)
	assertError(t, hangUp(r.h, id, "198.51.100.1:1", alice), http.StatusForbidden, realtimeauth.CodeCallMismatch, 0)
	assertError(t, hangUp(r.h, id, "", map[string]string{"Authorization": "Bearer bob"}), http.StatusForbidden, realtimeauth.CodeCallMismatch, 0)
	assertError(t, hangUp(r.h, "rtc_unknown", "", alice), http.StatusNotFound, realtimeauth.CodeCallNotFound, 0)
	assertError(t, hangUp(r.h, "bad%20id", "", alice), http.StatusNotFound, realtimeauth.CodeCallNotFound, 0)
	assertError(t, hangUp(r.h, id, "", nil), http.StatusUnauthorized, realtimeauth.CodeUnauthorized, 0)
	assert.Empty(t, r.up.Hangups())
	assert.Equal(t, 2, r.events.Count(realtimeauth.EventSessionMismatch))

	r.up.Fail = func(r *http.Request) int {
		if strings.HasSuffix(r.URL.Path, "/hangup") {
			return http.StatusForbidden
		}
		return 0
	}
	assertError(t, hangUp(r.h, id, "", alice), http.StatusBadGateway, realtimeauth.CodeUpstreamError, 0)
	assert.Equal(t, 1, activeCalls(t, r.h), "a failed hang-up leaves the call counted")
	r.up.Fail = nil

	w := hangUp(r.h, id, "", alice)
	require.Equal(t, http.StatusNoContent, w.Code, w.Body.String())
	assert.False(t, r.up.Live(id))
	assert.Equal(t, 0, activeCalls(t, r.h))
	ended := r.events.Named(realtimeauth.EventCallEnded)
	require.Len(t, ended, 1)
	assert.Equal(t, calls.EndClient, ended[0].Reason)
	assert.Equal(t, id, ended[0].CallID)
	assert.Equal(t, "alice", ended[0].Subject)
	assertError(t, hangUp(r.h, id, "", alice), http.StatusNotFound, realtimeauth.CodeCallNotFound, 0)
}

// TestCallMaxDuration: the deadline hangs the call up within a second of
// it, exactly once.
func TestCallMaxDuration(t *testing.T) {
	r := newCallRig(t, realtimeauth.WithLimits(realtimeauth.Limits{MaxCallDuration: 30 * time.Second}))
	id := placeCall(t, r.h, "", nil)
	r.clock.Advance(30*time.Second - time.Millisecond)
	assert.Empty(t, r.up.Hangups(), "not before the deadline")
	r.clock.Advance(time.Second)
	assert.Equal(t, []string{id}, r.up.Hangups(), "within a second of the deadline")
	r.clock.Advance(5 * time.Minute)
	assert.Equal(t, []string{id}, r.up.Hangups(), "exactly once")
	assert.Equal(t, 0, activeCalls(t, r.h))
	ended := r.events.Named(realtimeauth.EventCallEnded)
	require.Len(t, ended, 1)
	assert.Equal(t, calls.EndMaxDuration, ended[0].Reason)
}

// TestCallDeadlineRetried: a hang-up that fails at the deadline is tried
// again once its claim runs out, and the call counts meanwhile.
func TestCallDeadlineRetried(t *testing.T) {
	r := newCallRig(t, realtimeauth.WithLimits(realtimeauth.Limits{MaxCallDuration: 10 * time.Second}))
	id := placeCall(t, r.h, "", nil)
	var refused atomic.Int32
	r.up.Fail = func(*http.Request) int {
		refused.Add(1)
		return http.StatusForbidden
	}
	r.clock.Advance(11 * time.Second)
	assert.Equal(t, int32(1), refused.Load(), "one hang-up, not retried (a 403)")
	assert.Equal(t, 1, activeCalls(t, r.h))
	r.clock.Advance(13 * time.Second) // claimed at 10 s for the lease: the upstream timeout and 5 s
	assert.Equal(t, int32(1), refused.Load(), "claimed: not tried again within the lease")
	r.up.Fail = nil
	r.clock.Advance(2 * time.Second)
	assert.Equal(t, []string{id}, r.up.Hangups())
	assert.Equal(t, 0, activeCalls(t, r.h))
}

// TestCallDeadlineSharedRegistry: two instances share a registry; the one
// that made the call is closed (as if killed) before the deadline, and the
// other hangs it up, once.
func TestCallDeadlineSharedRegistry(t *testing.T) {
	reg, err := calls.NewMemoryRegistry(0)
	require.NoError(t, err)
	r := newCallRig(t, realtimeauth.WithLimits(realtimeauth.Limits{MaxCallDuration: time.Minute}), realtimeauth.WithCallRegistry(reg))
	other := r.newHandler(t, realtimeauth.WithLimits(realtimeauth.Limits{MaxCallDuration: time.Minute}), realtimeauth.WithCallRegistry(reg))
	third := r.newHandler(t, realtimeauth.WithLimits(realtimeauth.Limits{MaxCallDuration: time.Minute}), realtimeauth.WithCallRegistry(reg))
	id := placeCall(t, r.h, "", nil)
	placeCall(t, other, "", nil)
	assertError(t, call(third, "", nil), http.StatusTooManyRequests, realtimeauth.CodeTooManyCalls, 0)
	require.NoError(t, r.h.Close())
	r.clock.Advance(time.Minute + time.Second)
	assert.Len(t, r.up.Hangups(), 2)
	assert.Contains(t, r.up.Hangups(), id)
	assert.Equal(t, 2, r.events.Count(realtimeauth.EventCallEnded))
	r.clock.Advance(time.Hour)
	assert.Len(t, r.up.Hangups(), 2, "no call is hung up twice")
}

func TestCallRevoke(t *testing.T) {
	r := newCallRig(t, realtimeauth.WithAuthenticator(bearerSubject), realtimeauth.WithLimits(realtimeauth.Limits{MaxCallsPerClient: 10}))
	alice := map[string]string{"Authorization": "Bearer alice"}
	a1 := placeCall(t, r.h, "", alice)
	a2 := placeCall(t, r.h, "198.51.100.1:1", alice)
	b := placeCall(t, r.h, "", map[string]string{"Authorization": "Bearer bob"})
	var sess string
	for _, ev := range r.events.Named(realtimeauth.EventCallStarted) {
		if ev.CallID == a1 {
			sess = ev.SessionID
		}
	}
	require.NoError(t, r.h.RevokeSession(context.Background(), sess))
	assert.Equal(t, []string{a1}, r.up.Hangups(), "the revoked session's call, at once")
	n, err := r.h.RevokeSubject(context.Background(), "alice")
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	assert.Equal(t, []string{a1, a2}, r.up.Hangups())
	assert.True(t, r.up.Live(b))
	assert.Equal(t, 1, activeCalls(t, r.h))
	for _, ev := range r.events.Named(realtimeauth.EventCallEnded) {
		assert.Equal(t, calls.EndRevoked, ev.Reason)
	}
	assert.Equal(t, 2, r.events.Count(realtimeauth.EventCallEnded))

	r.up.Fail = func(*http.Request) int { return http.StatusInternalServerError }
	_, err = r.h.RevokeSubject(context.Background(), "bob")
	var ue *realtimeauth.UpstreamError
	assert.ErrorAs(t, err, &ue, "a failed hang-up is reported")
	assert.Equal(t, 1, activeCalls(t, r.h))
}

// watcher is a calls.Watcher the test drives.
type watcher struct {
	mu    sync.Mutex
	ended map[string]func()
	ctxs  map[string]context.Context
	sb    []calls.Sideband
}

func (w *watcher) Watch(ctx context.Context, s calls.Sideband, ended func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ended == nil {
		w.ended, w.ctxs = map[string]func(){}, map[string]context.Context{}
	}
	w.ended[s.CallID], w.ctxs[s.CallID] = ended, ctx
	w.sb = append(w.sb, s)
}

func (w *watcher) end(id string) {
	w.mu.Lock()
	f := w.ended[id]
	w.mu.Unlock()
	f()
}

func TestCallWatcher(t *testing.T) {
	wt := &watcher{}
	r := newCallRig(t, realtimeauth.WithCallWatcher(wt))
	a := placeCall(t, r.h, "", nil)
	b := placeCall(t, r.h, "", nil)
	require.Len(t, wt.sb, 2)
	assert.Equal(t, r.minter.Sideband(a), wt.sb[0], "the minter's sideband")
	r.up.End(a)
	wt.end(a) // the user closed the tab: the sideband says the call ended
	assert.Equal(t, 1, activeCalls(t, r.h))
	ended := r.events.Named(realtimeauth.EventCallEnded)
	require.Len(t, ended, 1)
	assert.Equal(t, calls.EndUpstream, ended[0].Reason)
	assert.Error(t, wt.ctxs[a].Err(), "the watch of an ended call is stopped")
	placeCall(t, r.h, "", nil) // its place is free
	require.Equal(t, http.StatusNoContent, hangUp(r.h, b, "", nil).Code)
	assert.Error(t, wt.ctxs[b].Err())
	wt.end(b) // the sideband closes after the hang-up: no second event
	assert.Equal(t, 2, r.events.Count(realtimeauth.EventCallEnded))
	require.NoError(t, r.h.Close())
	for id, ctx := range wt.ctxs {
		assert.Error(t, ctx.Err(), "Close stops every watch (%s)", id)
	}
}

func TestCallClose(t *testing.T) {
	r := newCallRig(t, realtimeauth.WithLimits(realtimeauth.Limits{MaxCallDuration: 10 * time.Second}))
	placeCall(t, r.h, "", nil)
	require.NotEmpty(t, r.clock.Pending(), "the sweep is scheduled")
	require.NoError(t, r.h.Close())
	require.NoError(t, r.h.Close())
	assert.Empty(t, r.clock.Pending(), "Close stops the sweep")
	r.clock.Advance(time.Minute)
	assert.Empty(t, r.up.Hangups(), "a closed instance hangs nothing up")
	assertError(t, call(r.h, "", nil), http.StatusServiceUnavailable, realtimeauth.CodeUnavailable, 0)
	assertError(t, hangUp(r.h, "rtc_x", "", nil), http.StatusServiceUnavailable, realtimeauth.CodeUnavailable, 0)

	r = newCallRig(t)
	assert.Empty(t, r.clock.Pending(), "no sweep without Limits.MaxCallDuration")
}

func TestCallOptions(t *testing.T) {
	m := &realtimeauthtest.Minter{}
	for l, want := range map[realtimeauth.Limits]string{
		{MaxCallDuration: 9 * time.Second}:  "Limits.MaxCallDuration",
		{MaxCallDuration: 61 * time.Minute}: "Limits.MaxCallDuration",
		{MaxCallDuration: -time.Minute}:     "Limits.MaxCallDuration",
		{MaxCallsPerClient: -1}:             "Limits.MaxCallsPerClient",
		{MaxCallsPerClient: 1001}:           "Limits.MaxCallsPerClient",
		{MaxCallsPerSubject: 2}:             "Limits.MaxCallsPerSubject needs WithAuthenticator",
	} {
		_, err := realtimeauth.New(m, realtimeauth.WithLimits(l))
		assert.ErrorContains(t, err, want)
	}
	_, err := realtimeauth.New(m, realtimeauth.WithAuthenticator(bearerSubject), realtimeauth.WithLimits(realtimeauth.Limits{MaxCallsPerSubject: -1}))
	assert.ErrorContains(t, err, "Limits.MaxCallsPerSubject")
}

func TestCallHealth(t *testing.T) {
	r := newCallRig(t)
	health := func() any {
		w := serveReq(r.h, req{method: http.MethodGet, path: healthU})
		require.Equal(t, http.StatusOK, w.Code)
		return jsonBody(t, w.Body.Bytes())["metrics"].(map[string]any)["activeCalls"]
	}
	assert.Equal(t, 0.0, health())
	placeCall(t, r.h, "", nil)
	placeCall(t, r.h, "", nil)
	r.clock.Advance(time.Second) // past the health snapshot's age
	assert.Equal(t, 2.0, health())
	assert.Equal(t, 2, r.h.Stats().ActiveCalls)
	assert.Equal(t, int64(2), r.h.Stats().TotalRequests, "a relayed call is a request of Stats (and of health)")

	broken := newCallRig(t, realtimeauth.WithCallRegistry(failingRegistry{}))
	w := serveReq(broken.h, req{method: http.MethodGet, path: healthU})
	assert.Nil(t, jsonBody(t, w.Body.Bytes())["metrics"].(map[string]any)["activeCalls"], "unknown, not 0")
	assert.Equal(t, -1, broken.h.Stats().ActiveCalls)
	assertError(t, call(broken.h, "", nil), http.StatusServiceUnavailable, realtimeauth.CodeStoreUnavailable, 0)
	assert.Empty(t, broken.up.Calls(), "no call without a registry")
}

// failingRegistry is a calls.Registry whose backend is down.
type failingRegistry struct{}

var errRegistryDown = errors.New("registry down")

func (failingRegistry) Reserve(context.Context, calls.Reservation) (string, error) {
	return "", errRegistryDown
}
func (failingRegistry) Bind(context.Context, calls.Start) (calls.Call, error) {
	return calls.Call{}, errRegistryDown
}
func (failingRegistry) Release(context.Context, string) error { return errRegistryDown }
func (failingRegistry) Get(context.Context, string, time.Time) (calls.Call, error) {
	return calls.Call{}, errRegistryDown
}
func (failingRegistry) End(context.Context, string, time.Time) (calls.Call, error) {
	return calls.Call{}, errRegistryDown
}
func (failingRegistry) SessionCalls(context.Context, string, time.Time) ([]calls.Call, error) {
	return nil, errRegistryDown
}
func (failingRegistry) SubjectCalls(context.Context, string, time.Time) ([]calls.Call, error) {
	return nil, errRegistryDown
}
func (failingRegistry) ClaimDue(context.Context, time.Time, time.Duration, int) ([]calls.Call, error) {
	return nil, errRegistryDown
}
func (failingRegistry) Count(context.Context, time.Time) (int, error) { return 0, errRegistryDown }

// flakyRegistry is a memory registry whose named operations fail.
type flakyRegistry struct {
	calls.Registry
	mu   sync.Mutex
	fail map[string]bool
}

func newFlakyRegistry(t *testing.T) *flakyRegistry {
	m, err := calls.NewMemoryRegistry(0)
	require.NoError(t, err)
	return &flakyRegistry{Registry: m, fail: map[string]bool{}}
}

func (f *flakyRegistry) set(op string, fail bool) {
	f.mu.Lock()
	f.fail[op] = fail
	f.mu.Unlock()
}

func (f *flakyRegistry) failing(op string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fail[op]
}

func (f *flakyRegistry) Bind(ctx context.Context, s calls.Start) (calls.Call, error) {
	if f.failing("Bind") {
		return calls.Call{}, errRegistryDown
	}
	return f.Registry.Bind(ctx, s)
}

func (f *flakyRegistry) End(ctx context.Context, id string, now time.Time) (calls.Call, error) {
	if f.failing("End") {
		return calls.Call{}, errRegistryDown
	}
	return f.Registry.End(ctx, id, now)
}

func (f *flakyRegistry) ClaimDue(ctx context.Context, now time.Time, lease time.Duration, n int) ([]calls.Call, error) {
	if f.failing("ClaimDue") {
		return nil, errRegistryDown
	}
	return f.Registry.ClaimDue(ctx, now, lease, n)
}

func (f *flakyRegistry) SessionCalls(ctx context.Context, id string, now time.Time) ([]calls.Call, error) {
	if f.failing("SessionCalls") {
		return nil, errRegistryDown
	}
	return f.Registry.SessionCalls(ctx, id, now)
}

func (f *flakyRegistry) Get(ctx context.Context, id string, now time.Time) (calls.Call, error) {
	if f.failing("Get") {
		return calls.Call{}, errRegistryDown
	}
	return f.Registry.Get(ctx, id, now)
}

// TestCallRegistryFailures: the registry failing at each step fails
// closed and leaves no call running unowned.
func TestCallRegistryFailures(t *testing.T) {
	reg := newFlakyRegistry(t)
	r := newCallRig(t, realtimeauth.WithCallRegistry(reg), realtimeauth.WithLimits(realtimeauth.Limits{MaxCallDuration: 10 * time.Second}))

	// Bind fails after the upstream placed the call: the call is hung up.
	reg.set("Bind", true)
	assertError(t, call(r.h, "", nil), http.StatusServiceUnavailable, realtimeauth.CodeStoreUnavailable, 0)
	orphan := r.up.Calls()[0].ID
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for r.up.Live(orphan) && ctx.Err() == nil {
		select { // the orphan's hang-up runs on a goroutine of its own
		case <-r.up.Ended(orphan):
		case <-ctx.Done():
		}
	}
	assert.False(t, r.up.Live(orphan), "the unrecorded call is hung up")
	assert.Equal(t, 0, activeCalls(t, r.h), "its slot is released")
	reg.set("Bind", false)

	// Get fails: the DELETE is refused, the call lives on.
	id := placeCall(t, r.h, "", nil)
	reg.set("Get", true)
	assertError(t, hangUp(r.h, id, "", nil), http.StatusServiceUnavailable, realtimeauth.CodeStoreUnavailable, 0)
	assert.True(t, r.up.Live(id))
	reg.set("Get", false)

	// End fails after the hang-up: the DELETE succeeds (the call is over),
	// the registry counts it until it expires or ends.
	reg.set("End", true)
	require.Equal(t, http.StatusNoContent, hangUp(r.h, id, "", nil).Code)
	assert.False(t, r.up.Live(id))
	assert.Equal(t, 1, activeCalls(t, r.h))
	reg.set("End", false)
	require.Equal(t, http.StatusNotFound, hangUp(r.h, "rtc_x", "", nil).Code)

	// ClaimDue fails: the sweep tries again at its next tick.
	reg.set("ClaimDue", true)
	r.clock.Advance(11 * time.Second)
	assert.Equal(t, 1, activeCalls(t, r.h))
	reg.set("ClaimDue", false)
	r.clock.Advance(time.Second)
	assert.Equal(t, 0, activeCalls(t, r.h), "the deadline sweep ended it (its hang-up got 404: the call was over)")

	// SessionCalls fails: RevokeSession says so.
	placeCall(t, r.h, "", nil)
	started := r.events.Named(realtimeauth.EventCallStarted)
	sess := started[len(started)-1].SessionID
	reg.set("SessionCalls", true)
	assert.ErrorIs(t, r.h.RevokeSession(context.Background(), sess), errRegistryDown)
}

// BenchmarkRelay is one relayed call and its hang-up through the whole
// handler, with the in-memory stores and the fake minter: the handler's own
// cost per call, the upstream's left out.
func BenchmarkRelay(b *testing.B) {
	m := &realtimeauthtest.Minter{}
	h, err := realtimeauth.New(m, realtimeauth.WithLogger(quietLogger()), realtimeauth.WithAbuseGuard(nil),
		realtimeauth.WithLimits(realtimeauth.Limits{Sessions: realtimeauth.Rate{N: 1023, Per: 4 * time.Millisecond},
			Mints: realtimeauth.Rate{N: 1023, Per: 4 * time.Millisecond}, MaxCallsPerClient: 1000}))
	require.NoError(b, err)
	defer h.Close()
	b.ReportAllocs()
	for b.Loop() {
		w := call(h, "", nil)
		if w.Code != http.StatusCreated {
			b.Fatal(w.Code, w.Body.String())
		}
		id := strings.TrimPrefix(w.Header().Get("Location"), callsURL+"/")
		if w := hangUp(h, id, "", nil); w.Code != http.StatusNoContent {
			b.Fatal(w.Code, w.Body.String())
		}
	}
}

// claimAndDie is a registry through which an instance claims due calls and
// then dies before it can hang them up: from then on it claims nothing.
type claimAndDie struct {
	calls.Registry
	died atomic.Bool
}

func (c *claimAndDie) ClaimDue(ctx context.Context, now time.Time, lease time.Duration, n int) ([]calls.Call, error) {
	if c.died.Load() {
		return nil, nil
	}
	got, err := c.Registry.ClaimDue(ctx, now, lease, n)
	if len(got) > 0 {
		c.died.Store(true)
		return nil, errRegistryDown
	}
	return got, err
}

// TestCallDeadlineClaimantDies: the instance that claimed a due call dies
// before hanging it up; another instance hangs it up once the claim's
// lease has run out, and only once.
func TestCallDeadlineClaimantDies(t *testing.T) {
	reg, err := calls.NewMemoryRegistry(0)
	require.NoError(t, err)
	// The dying instance is made first, so that its sweep runs first at
	// every tick of the shared fake clock.
	r := newCallRig(t, realtimeauth.WithLimits(realtimeauth.Limits{MaxCallDuration: time.Minute}), realtimeauth.WithCallRegistry(&claimAndDie{Registry: reg}))
	other := r.newHandler(t, realtimeauth.WithLimits(realtimeauth.Limits{MaxCallDuration: time.Minute}), realtimeauth.WithCallRegistry(reg))
	id := placeCall(t, other, "", nil)
	r.clock.Advance(time.Minute + time.Second)
	assert.Empty(t, r.up.Hangups(), "claimed by the instance that died")
	r.clock.Advance(15 * time.Second) // the lease: the upstream timeout (10 s) and 5 s
	assert.Equal(t, []string{id}, r.up.Hangups(), "the other instance took it over")
	r.clock.Advance(time.Hour)
	assert.Equal(t, []string{id}, r.up.Hangups(), "once")
}

// TestCallSessionConfig: WithSessionConfig's choice goes upstream as the
// call's session, over the minter's template; its refusal refuses the call.
func TestCallSessionConfig(t *testing.T) {
	r := newCallRig(t, realtimeauth.WithSessionConfig(func(req *http.Request, _ string) (json.RawMessage, error) {
		if req.URL.Query().Get("voice") == "forbidden" {
			return nil, realtimeauth.ErrForbidden
		}
		return json.RawMessage(`{"audio":{"output":{"voice":"` + req.URL.Query().Get("voice") + `"}}}`), nil
	}))
	w := serveReq(r.h, req{path: callsURL + "?voice=ash", body: testOffer, ct: "application/sdp"})
	require.Equal(t, http.StatusCreated, w.Code, w.Body.String())
	assert.JSONEq(t, `{"type":"realtime","model":"gpt-realtime","instructions":"be brief","audio":{"output":{"voice":"ash"}}}`,
		string(r.up.Calls()[0].Session))
	w = serveReq(r.h, req{path: callsURL + "?voice=forbidden", body: testOffer, ct: "application/sdp"})
	assertError(t, w, http.StatusForbidden, realtimeauth.CodeForbidden, 0)
	assert.Len(t, r.up.Calls(), 1)
	assert.Equal(t, 1, activeCalls(t, r.h), "the refused call holds no slot")
}

// TestCallCapConcurrent: 20 concurrent calls from one client against the
// default cap of 2: exactly 2 are placed, upstream and in the registry.
func TestCallCapConcurrent(t *testing.T) {
	r := newCallRig(t, realtimeauth.WithLimits(realtimeauth.Limits{Sessions: realtimeauth.Rate{N: 100, Per: time.Minute},
		Mints: realtimeauth.Rate{N: 100, Per: time.Minute}}))
	var placed, capped atomic.Int32
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			switch w := call(r.h, "", nil); w.Code {
			case http.StatusCreated:
				placed.Add(1)
			case http.StatusTooManyRequests:
				capped.Add(1)
			default:
				t.Errorf("status %d: %s", w.Code, w.Body.String())
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int32(2), placed.Load())
	assert.Equal(t, int32(18), capped.Load())
	assert.Len(t, r.up.Calls(), 2, "no upstream call over the cap")
	assert.Equal(t, 2, activeCalls(t, r.h))
}

package realtimeauth_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"
)

// TestFailedMintIsRefunded: a mint that fails gives back what the store
// operation charged, for a token and for a refresh: a client retrying
// through an upstream outage is never rate limited nor struck for it, and
// gets its full allowance once the upstream is back.
func TestFailedMintIsRefunded(t *testing.T) {
	g := &strikeGuard{}
	r := newRig(t, realtimeauth.WithLimits(realtimeauth.Limits{
		Sessions: realtimeauth.Rate{N: 2, Per: time.Minute},
		Mints:    realtimeauth.Rate{N: 3, Per: time.Minute},
	}),
		realtimeauth.WithAbuseGuard(g), realtimeauth.WithLimits(realtimeauth.Limits{MaxRefreshes: 100, MinRefreshInterval: -1}))
	id := openSession(t, r) // one new session and one mint charged
	r.mint.SetError(&realtimeauth.UpstreamError{StatusCode: 500, Message: "down"})
	for range 20 {
		assertError(t, serveReq(r.h, req{path: tokenURL}), 502, "upstream_error", 0)
		assertError(t, serveReq(r.h, req{path: refrURL, body: refreshBody(id)}), 502, "upstream_error", 0)
	}
	assert.Zero(t, g.count(), "strikes")
	r.mint.SetError(nil)
	assert.Equal(t, http.StatusOK, serveReq(r.h, req{path: tokenURL}).Code, "the second new session")
	assert.Equal(t, http.StatusOK, serveReq(r.h, req{path: refrURL, body: refreshBody(id)}).Code, "the third mint")
	assertError(t, serveReq(r.h, req{path: refrURL, body: refreshBody(id)}), 429, "rate_limited", -1)
	assert.Equal(t, 3+40, r.mint.Calls())
}

// TestBudgetRefusalIsRefunded: upstream_busy gives back the allowances
// too; only mints count against them.
func TestBudgetRefusalIsRefunded(t *testing.T) {
	r := newRig(t, realtimeauth.WithLimits(realtimeauth.Limits{
		Sessions:      realtimeauth.Rate{N: 1, Per: time.Minute},
		UpstreamRate:  rate.Every(time.Minute),
		UpstreamBurst: 1,
	}))
	require.Equal(t, http.StatusOK, serveReq(r.h, req{path: tokenURL, remote: "192.0.2.1:1"}).Code)
	for range 10 {
		assertError(t, serveReq(r.h, req{path: tokenURL}), 503, "upstream_busy", -1)
	}
	r.clock.Advance(time.Minute)
	assert.Equal(t, http.StatusOK, serveReq(r.h, req{path: tokenURL}).Code, "the one new session a minute is still there")
	assert.Equal(t, 2, r.mint.Calls())
}

// TestClientGoneIsNotRefunded: a client that goes away during its mint is
// charged for it, since the mint may have reached the upstream: otherwise
// closing every request mid-mint would spend the upstream budget uncharged.
func TestClientGoneIsNotRefunded(t *testing.T) {
	r := newRig(t, realtimeauth.WithLimits(realtimeauth.Limits{Sessions: realtimeauth.Rate{N: 1, Per: time.Minute}}))
	ctx, cancel := context.WithCancel(context.Background())
	r.mint.Func = func(context.Context, realtimeauth.MintRequest) (realtimeauth.Token, error) {
		cancel()
		return realtimeauth.Token{}, context.Canceled
	}
	w := httptest.NewRecorder()
	r.h.ServeHTTP(w, req{path: tokenURL}.build().WithContext(ctx))
	require.Equal(t, 499, w.Code)
	r.mint.Func = nil
	assertError(t, serveReq(r.h, req{path: tokenURL}), 429, "rate_limited", -1)
}

// refundFails is a store whose Refund fails.
type refundFails struct{ realtimeauth.SessionStore }

func (refundFails) Refund(context.Context, realtimeauth.RefundRequest) error {
	return errors.New("store down")
}

// TestRefundFailureIsLogged: a refund that fails is logged and changes
// nothing else in the answer.
func TestRefundFailureIsLogged(t *testing.T) {
	logs := &syncBuffer{}
	r := newRig(t, realtimeauth.WithSessionStore(refundFails{realtimeauth.NewMemoryStore()}),
		realtimeauth.WithLogger(newTextLogger(logs)))
	r.mint.SetError(&realtimeauth.UpstreamError{StatusCode: 500, Message: "down"})
	assertError(t, serveReq(r.h, req{path: tokenURL}), 502, "upstream_error", 0)
	assert.Contains(t, logs.String(), "could not refund the allowances of a failed mint")
	assert.Contains(t, logs.String(), "store down")
}

// restoreFails is a store whose Restore fails.
type restoreFails struct{ realtimeauth.SessionStore }

func (restoreFails) Restore(context.Context, []realtimeauth.Session, time.Time) error {
	return errors.New("store down")
}

// TestFailedMintRestoresTheEvicted: a failed mint's undo puts back the
// session its Open evicted, and announces no eviction; when the store
// cannot put it back, the log says so and session_evicted is emitted.
func TestFailedMintRestoresTheEvicted(t *testing.T) {
	for _, failing := range []bool{false, true} {
		ev := &events{}
		logs := &syncBuffer{}
		var store realtimeauth.SessionStore = realtimeauth.NewMemoryStore()
		if failing {
			store = restoreFails{store}
		}
		r := newRig(t, realtimeauth.WithSessionStore(store), realtimeauth.WithLimits(realtimeauth.Limits{MaxSessionsPerClient: 1}),
			realtimeauth.WithEventHook(ev.Hook), realtimeauth.WithLogger(newTextLogger(logs)))
		id := openSession(t, r)
		r.mint.SetError(&realtimeauth.UpstreamError{StatusCode: 500, Message: "down"})
		assertError(t, serveReq(r.h, req{path: tokenURL}), 502, "upstream_error", 0)
		r.mint.SetError(nil)
		r.clock.Advance(10 * time.Second)
		w := serveReq(r.h, req{path: refrURL, body: refreshBody(id)})
		if failing {
			assertError(t, w, 404, "session_not_found", 0)
			assert.Equal(t, 1, ev.Count(realtimeauth.EventSessionEvicted))
			assert.Contains(t, logs.String(), "could not restore the sessions evicted for a failed mint")
		} else {
			assert.Equal(t, http.StatusOK, w.Code, "the live session was put back: %s", w.Body.String())
			assert.Zero(t, ev.Count(realtimeauth.EventSessionEvicted))
			// A successful mint announces its eviction.
			require.Equal(t, http.StatusOK, serveReq(r.h, req{path: tokenURL}).Code)
			assert.Equal(t, 1, ev.Count(realtimeauth.EventSessionEvicted))
		}
	}
}

// TestEmptyBudgetCostsNoStoreOperation: while the upstream budget is
// empty, token and refresh requests are answered upstream_busy before the
// store is asked: no Open, Refresh, Delete or Refund per request, nothing
// charged, and the Retry-After is the budget's.
func TestEmptyBudgetCostsNoStoreOperation(t *testing.T) {
	store := &countingStore{SessionStore: realtimeauth.NewMemoryStore()}
	r := newRig(t, realtimeauth.WithSessionStore(store), realtimeauth.WithAbuseGuard(nil),
		realtimeauth.WithLimits(realtimeauth.Limits{UpstreamRate: rate.Every(time.Minute), UpstreamBurst: 1}))
	id := issueToken(t, r.h, defaultRemote)["sessionId"].(string)
	before := store.calls.Load()
	r.clock.Advance(30 * time.Second)
	for range 100 {
		assertError(t, serveReq(r.h, req{path: tokenURL, remote: "192.0.2.9:1"}), 503, "upstream_busy", 30)
		assertError(t, serveReq(r.h, req{path: refrURL, body: refreshBody(id)}), 503, "upstream_busy", 30)
	}
	assert.Equal(t, before, store.calls.Load(), "store operations while the budget was empty")
	assert.Equal(t, 1, r.mint.Calls())
	r.clock.Advance(30 * time.Second)
	assert.Equal(t, http.StatusOK, serveReq(r.h, req{path: tokenURL, remote: "192.0.2.9:1"}).Code, "nothing was charged")
}

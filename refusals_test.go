package realtimeauth_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/realtimeauth/realtimeauth"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// strikeGuard is an AbuseGuard that counts strikes and never blocks, unless
// told to block or to fail.
type strikeGuard struct {
	mu      sync.Mutex
	strikes int
	block   time.Duration
	fail    bool
}

func (g *strikeGuard) Blocked(context.Context, string, time.Time) (time.Duration, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.fail {
		return 0, errors.New("guard down")
	}
	return g.block, nil
}

func (g *strikeGuard) Strike(context.Context, string, time.Time) (time.Duration, bool, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.strikes++
	return 0, false, nil
}

func (g *strikeGuard) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.strikes
}

// errReader fails every Read.
type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

// refusalCase is one request that the handler refuses, and the row of the
// error table it must be answered by.
type refusalCase struct {
	name  string
	row   string // the error table's row
	opts  []realtimeauth.Option
	prep  func(t *testing.T, r *rig, g *strikeGuard) req
	build func(q req) *http.Request // instead of q.build, for bodies a string cannot make
	retry int                       // whole seconds of Retry-After; 0 none
	mints int                       // mints the request causes
	// session: the event names the request's session.
	session bool
}

func tokenReq(body string) func(*testing.T, *rig, *strikeGuard) req {
	return func(*testing.T, *rig, *strikeGuard) req { return req{path: tokenURL, body: body} }
}

func refreshReq(body string) func(*testing.T, *rig, *strikeGuard) req {
	return func(*testing.T, *rig, *strikeGuard) req { return req{path: refrURL, body: body} }
}

// failMint makes the minter fail with err and sends a token request.
func failMint(err error) func(*testing.T, *rig, *strikeGuard) req {
	return func(_ *testing.T, r *rig, _ *strikeGuard) req {
		r.mint.SetError(err)
		return req{path: tokenURL}
	}
}

func openSession(t *testing.T, r *rig) string {
	t.Helper()
	return issueToken(t, r.h, defaultRemote)["sessionId"].(string)
}

// configHook answers every WithSessionConfig call with cfg and err.
func configHook(cfg string, err error) realtimeauth.Option {
	return realtimeauth.WithSessionConfig(func(*http.Request, string) (json.RawMessage, error) {
		if cfg == "" {
			return nil, err
		}
		return json.RawMessage(cfg), err
	})
}

var refusalCases = []refusalCase{
	{name: "token malformed JSON", row: "bad_json", prep: tokenReq(`{"model":`)},
	{name: "token body not an object", row: "bad_json", prep: tokenReq(`["x"]`)},
	{name: "token body invalid UTF-8", row: "bad_json", prep: tokenReq("{\"a\":\"\xff\"}")},
	{name: "refresh empty body", row: "missing_session_id", prep: refreshReq("")},
	{name: "refresh missing sessionId", row: "missing_session_id", prep: refreshReq(`{"other":1}`)},
	{name: "refresh empty sessionId", row: "missing_session_id", prep: refreshReq(`{"sessionId":""}`)},
	{name: "refresh malformed JSON", row: "bad_refresh_body", prep: refreshReq(`{"sessionId":`)},
	{name: "refresh number sessionId", row: "bad_refresh_body", prep: refreshReq(`{"sessionId":12345}`)},
	{name: "refresh null sessionId", row: "bad_refresh_body", prep: refreshReq(`{"sessionId":null}`)},
	{name: "refresh duplicate sessionId key", row: "bad_refresh_body",
		prep: func(t *testing.T, r *rig, _ *strikeGuard) req {
			id := openSession(t, r)
			return req{path: refrURL, body: `{"sessionId":"` + id + `","sessionId":"` + uuid.NewString() + `"}`}
		}},
	{name: "refresh malformed sessionId", row: "bad_session_id", prep: refreshReq(refreshBody("not-a-uuid"))},
	{name: "refresh upper-case sessionId", row: "bad_session_id",
		prep: func(t *testing.T, r *rig, _ *strikeGuard) req {
			return req{path: refrURL, body: refreshBody(strings.ToUpper(openSession(t, r)))}
		}},
	{name: "body that fails to read", row: "body_read", prep: tokenReq("{}"),
		build: func(q req) *http.Request {
			hr := q.build()
			hr.Body, hr.ContentLength = io.NopCloser(errReader{}), -1
			return hr
		}},
	{name: "body over the cap", row: "too_large", opts: []realtimeauth.Option{realtimeauth.WithLimits(realtimeauth.Limits{MaxBodyBytes: 64})},
		prep: tokenReq(`{"pad":"` + strings.Repeat("x", 100) + `"}`)},
	{name: "chunked body over the cap", row: "too_large", opts: []realtimeauth.Option{realtimeauth.WithLimits(realtimeauth.Limits{MaxBodyBytes: 64})},
		prep: refreshReq(`{"pad":"` + strings.Repeat("x", 100) + `"}`),
		build: func(q req) *http.Request {
			hr := q.build()
			hr.ContentLength = -1 // as a chunked upload arrives
			return hr
		}},
	{name: "wrong content type", row: "media_type",
		prep: func(*testing.T, *rig, *strikeGuard) req { return req{path: tokenURL, body: `{}`, ct: "text/plain"} }},
	{name: "form content type", row: "media_type",
		prep: func(*testing.T, *rig, *strikeGuard) req {
			return req{path: refrURL, body: `sessionId=x`, ct: "application/x-www-form-urlencoded"}
		}},
	{name: "session configuration refused", row: "session_config", opts: []realtimeauth.Option{configHook("", errors.New("no such voice"))},
		prep: tokenReq(`{"voice":"x"}`)},
	{name: "session configuration forbidden", row: "forbidden",
		opts: []realtimeauth.Option{configHook("", fmt.Errorf("premium: %w", realtimeauth.ErrForbidden))}, prep: tokenReq("")},
	{name: "session configuration not an object", row: "internal", opts: []realtimeauth.Option{configHook(`"x"`, nil)},
		prep: tokenReq("")},
	{name: "origin not allowed", row: "origin",
		prep: func(*testing.T, *rig, *strikeGuard) req {
			return req{path: tokenURL, headers: map[string]string{"Origin": "https://evil.example.net"}}
		}},
	{name: "preflight from an origin not allowed", row: "origin",
		prep: func(*testing.T, *rig, *strikeGuard) req { return preflightReq(tokenURL, "https://evil.example.net") }},
	{name: "script from an origin not allowed", row: "origin",
		prep: func(*testing.T, *rig, *strikeGuard) req {
			return req{method: http.MethodGet, path: base + "/client.js", headers: map[string]string{"Origin": "https://evil.example.net"}}
		}},
	{name: "failed authentication", row: "unauthorized", opts: []realtimeauth.Option{realtimeauth.WithAuthenticator(bearerAuth)},
		prep: func(*testing.T, *rig, *strikeGuard) req { return req{path: tokenURL, headers: as("bad")} }},
	{name: "blocked client", row: "blocked", retry: 60,
		prep: func(_ *testing.T, _ *rig, g *strikeGuard) req { g.block = time.Minute; return req{path: tokenURL} }},
	{name: "session used from another IP", row: "session_mismatch", session: true,
		prep: func(t *testing.T, r *rig, _ *strikeGuard) req {
			r.clock.Advance(time.Minute)
			return req{path: refrURL, body: refreshBody(newSessionAt(t, r, "198.51.100.1:1"))}
		}},
	{name: "session of another subject", row: "session_mismatch", session: true,
		opts: []realtimeauth.Option{realtimeauth.WithAuthenticator(bearerAuth)},
		prep: func(t *testing.T, r *rig, _ *strikeGuard) req {
			w := serveReq(r.h, req{path: tokenURL, headers: as("alice")})
			r.clock.Advance(time.Minute)
			return req{path: refrURL, headers: as("mallory"), body: refreshBody(jsonBody(t, w.Body.Bytes())["sessionId"].(string))}
		}},
	{name: "revoked session", row: "session_revoked", session: true,
		prep: func(t *testing.T, r *rig, _ *strikeGuard) req {
			id := openSession(t, r)
			require.NoError(t, r.h.RevokeSession(context.Background(), id))
			return req{path: refrURL, body: refreshBody(id)}
		}},
	{name: "refresh limit reached", row: "refresh_limit", session: true,
		opts: []realtimeauth.Option{realtimeauth.WithLimits(realtimeauth.Limits{MaxRefreshes: 1, MinRefreshInterval: -1})},
		prep: func(t *testing.T, r *rig, _ *strikeGuard) req {
			id := openSession(t, r)
			require.Equal(t, 200, serveReq(r.h, req{path: refrURL, body: refreshBody(id)}).Code)
			return req{path: refrURL, body: refreshBody(id)}
		}},
	{name: "session never issued", row: "session_not_found", session: true, prep: refreshReq(refreshBody(uuid.NewString()))},
	{name: "session expired", row: "session_not_found", session: true,
		opts: []realtimeauth.Option{realtimeauth.WithLimits(realtimeauth.Limits{SessionTTL: 2 * time.Minute})},
		prep: func(t *testing.T, r *rig, _ *strikeGuard) req {
			id := openSession(t, r)
			r.clock.Advance(2 * time.Minute)
			return req{path: refrURL, body: refreshBody(id)}
		}},
	{name: "session evicted by its client's newer ones", row: "session_not_found", session: true,
		opts: []realtimeauth.Option{realtimeauth.WithLimits(realtimeauth.Limits{MaxSessionsPerClient: 1})},
		prep: func(t *testing.T, r *rig, _ *strikeGuard) req {
			id := openSession(t, r)
			openSession(t, r)
			r.clock.Advance(time.Minute)
			return req{path: refrURL, body: refreshBody(id)}
		}},
	{name: "unknown path", row: "not_found", prep: func(*testing.T, *rig, *strikeGuard) req { return req{path: base + "/tokens"} }},
	{name: "outside the base path", row: "not_found", prep: func(*testing.T, *rig, *strikeGuard) req { return req{path: "/token"} }},
	{name: "GET token", row: "method",
		prep: func(*testing.T, *rig, *strikeGuard) req { return req{method: http.MethodGet, path: tokenURL} }},
	{name: "PUT refresh", row: "method",
		prep: func(*testing.T, *rig, *strikeGuard) req { return req{method: http.MethodPut, path: refrURL} }},
	{name: "POST health", row: "method", prep: func(*testing.T, *rig, *strikeGuard) req { return req{path: healthU} }},
	{name: "new sessions over the limit", row: "rate_limited", retry: 60,
		opts: []realtimeauth.Option{realtimeauth.WithLimits(realtimeauth.Limits{Sessions: realtimeauth.Rate{N: 2, Per: time.Minute}})},
		prep: func(t *testing.T, r *rig, _ *strikeGuard) req {
			openSession(t, r)
			openSession(t, r)
			// Two at the window's start: the third waits for them to leave
			// the last four quarters of a minute.
			return req{path: tokenURL}
		}},
	{name: "refresh over the mint limit", row: "rate_limited", retry: 60, session: true,
		opts: []realtimeauth.Option{realtimeauth.WithLimits(realtimeauth.Limits{
			Mints:              realtimeauth.Rate{N: 1, Per: time.Minute},
			MaxRefreshes:       5,
			MinRefreshInterval: -1,
		})},
		prep: func(t *testing.T, r *rig, _ *strikeGuard) req {
			return req{path: refrURL, body: refreshBody(openSession(t, r))}
		}},
	{name: "subject over its limit", row: "rate_limited", retry: 60,
		opts: []realtimeauth.Option{realtimeauth.WithAuthenticator(bearerAuth), realtimeauth.WithLimits(realtimeauth.Limits{SubjectMints: realtimeauth.Rate{N: 1, Per: time.Minute}})},
		prep: func(t *testing.T, r *rig, _ *strikeGuard) req {
			require.Equal(t, 200, serveReq(r.h, req{path: tokenURL, remote: "192.0.2.1:1", headers: as("alice")}).Code)
			return req{path: tokenURL, headers: as("alice")}
		}},
	{name: "refresh too soon", row: "refresh_too_soon", retry: 7, session: true,
		prep: func(t *testing.T, r *rig, _ *strikeGuard) req {
			id := openSession(t, r)
			r.clock.Advance(3 * time.Second)
			return req{path: refrURL, body: refreshBody(id)}
		}},
	{name: "refresh too soon rounds up", row: "refresh_too_soon", retry: 1, session: true,
		prep: func(t *testing.T, r *rig, _ *strikeGuard) req {
			id := openSession(t, r)
			r.clock.Advance(9*time.Second + 400*time.Millisecond)
			return req{path: refrURL, body: refreshBody(id)}
		}},
	{name: "subject at its session cap", row: "too_many_sessions",
		opts: []realtimeauth.Option{realtimeauth.WithAuthenticator(bearerAuth), realtimeauth.WithLimits(realtimeauth.Limits{MaxSessionsPerSubject: 1})},
		prep: func(t *testing.T, r *rig, _ *strikeGuard) req {
			require.Equal(t, 200, serveReq(r.h, req{path: tokenURL, headers: as("alice")}).Code)
			return req{path: tokenURL, headers: as("alice")}
		}},
	{name: "full store, heaviest client", row: "store_full", opts: []realtimeauth.Option{realtimeauth.WithLimits(realtimeauth.Limits{MaxSessions: 1})},
		prep: func(t *testing.T, r *rig, _ *strikeGuard) req { openSession(t, r); return req{path: tokenURL} }},
	{name: "upstream 500", row: "upstream", mints: 1, session: true,
		prep: failMint(&realtimeauth.UpstreamError{StatusCode: 500, Message: "boom"})},
	{name: "upstream 401 is not passed on", row: "upstream", mints: 1, session: true,
		prep: failMint(&realtimeauth.UpstreamError{StatusCode: 401, Message: "Incorrect API key"})},
	{name: "upstream malformed answer", row: "upstream", mints: 1, session: true,
		prep: failMint(&realtimeauth.UpstreamError{StatusCode: 200, Message: "malformed JSON answer"})},
	{name: "minter plain error", row: "upstream", mints: 1, session: true, prep: failMint(errors.New("something broke"))},
	{name: "minter returns an expired token", row: "upstream", mints: 1, session: true,
		prep: func(t *testing.T, r *rig, _ *strikeGuard) req {
			r.mint.Func = func(context.Context, realtimeauth.MintRequest) (realtimeauth.Token, error) {
				return realtimeauth.Token{Value: "ek_x", ExpiresAt: r.clock.Now()}, nil
			}
			return req{path: tokenURL}
		}},
	{name: "upstream 429", row: "upstream_limited", retry: 7, mints: 1, session: true,
		prep: failMint(&realtimeauth.UpstreamError{StatusCode: 429, RetryAfter: 6500 * time.Millisecond})},
	{name: "upstream 429 asking for months", row: "upstream_limited", retry: 60, mints: 1, session: true,
		prep: failMint(&realtimeauth.UpstreamError{StatusCode: 429, RetryAfter: 1e7 * time.Second})},
	{name: "upstream 429 without Retry-After", row: "upstream_limited", retry: 1, mints: 1, session: true,
		prep: failMint(&realtimeauth.UpstreamError{StatusCode: 429})},
	// Refused before the store is asked: no session was opened.
	{name: "upstream budget exhausted", row: "upstream_busy", retry: 1,
		opts: []realtimeauth.Option{realtimeauth.WithLimits(realtimeauth.Limits{UpstreamRate: 1, UpstreamBurst: 1})},
		prep: func(t *testing.T, r *rig, _ *strikeGuard) req {
			newSessionAt(t, r, "192.0.2.1:1")
			return req{path: tokenURL}
		}},
	{name: "upstream timeout", row: "upstream_timeout", mints: 1, session: true,
		opts: []realtimeauth.Option{realtimeauth.WithLimits(realtimeauth.Limits{UpstreamTimeout: 100 * time.Millisecond})},
		prep: func(t *testing.T, r *rig, _ *strikeGuard) req {
			r.mint.Func = func(ctx context.Context, _ realtimeauth.MintRequest) (realtimeauth.Token, error) {
				<-ctx.Done() // the handler's upstream timeout ends it
				return realtimeauth.Token{}, fmt.Errorf("dial: %w", ctx.Err())
			}
			return req{path: tokenURL}
		}},
	{name: "refresh upstream timeout", row: "upstream_timeout", mints: 1, session: true,
		opts: []realtimeauth.Option{realtimeauth.WithLimits(realtimeauth.Limits{MaxRefreshes: 5, MinRefreshInterval: -1})},
		prep: func(t *testing.T, r *rig, _ *strikeGuard) req {
			id := openSession(t, r)
			r.mint.SetError(context.DeadlineExceeded)
			return req{path: refrURL, body: refreshBody(id)}
		}},
	{name: "abuse guard down", row: "store_unavailable",
		prep: func(_ *testing.T, _ *rig, g *strikeGuard) req { g.fail = true; return req{path: tokenURL} }},
	{name: "session store down", row: "store_unavailable",
		opts: []realtimeauth.Option{realtimeauth.WithSessionStore(&brokenStore{SessionStore: realtimeauth.NewMemoryStore(), fail: map[string]bool{"Open": true}})},
		prep: tokenReq("")},
	{name: "call over the client's cap", row: "too_many_calls", opts: []realtimeauth.Option{realtimeauth.WithLimits(realtimeauth.Limits{MaxCallsPerClient: 1})},
		prep: func(t *testing.T, r *rig, _ *strikeGuard) req {
			placeCall(t, r.h, "", nil)
			return req{path: callsURL, body: testOffer, ct: "application/sdp"}
		}},
	{name: "hang-up from another client", row: "call_mismatch", session: true,
		prep: func(t *testing.T, r *rig, _ *strikeGuard) req {
			return req{method: http.MethodDelete, path: callsURL + "/" + placeCall(t, r.h, "198.51.100.1:1", nil)}
		}},
	{name: "hang-up of an unknown call", row: "call_not_found",
		prep: func(*testing.T, *rig, *strikeGuard) req {
			return req{method: http.MethodDelete, path: callsURL + "/rtc_nope"}
		}},
	{name: "call body not an SDP offer", row: "bad_offer",
		prep: func(*testing.T, *rig, *strikeGuard) req {
			return req{path: callsURL, body: "hello", ct: "application/sdp"}
		}},
	{name: "call body JSON", row: "offer_media_type",
		prep: func(*testing.T, *rig, *strikeGuard) req { return req{path: callsURL, body: `{"sdp":"v=0"}`} }},
	{name: "GET calls", row: "method_call",
		prep: func(*testing.T, *rig, *strikeGuard) req { return req{method: http.MethodGet, path: callsURL} }},
	{name: "closed", row: "unavailable",
		prep: func(t *testing.T, r *rig, _ *strikeGuard) req {
			require.NoError(t, r.h.Close())
			require.NoError(t, r.h.Close(), "Close is idempotent")
			return req{path: tokenURL}
		}},
}

// TestRefusals runs every refusal through the whole handler and checks it
// against its row of the error table: the status, the code and message,
// Retry-After, the event (name, severity, fields, log line), whether it was
// a strike, and how many mints it caused. Every row but the one TestClientGone
// covers is exercised.
func TestRefusals(t *testing.T) {
	const ua = "test-agent/1.0"
	table := realtimeauth.ErrorTable()
	seen := map[string]bool{"client_gone": true, // TestClientGone
		"relay_unavailable": true} // TestCallRelayUnavailable: a Minter that places no calls
	for _, tc := range refusalCases {
		e, ok := table[tc.row]
		require.True(t, ok, "row %q", tc.row)
		seen[tc.row] = true
		t.Run(tc.name, func(t *testing.T) {
			guard := &strikeGuard{}
			ev := &events{}
			logs := &syncBuffer{}
			r := newRig(t, append([]realtimeauth.Option{realtimeauth.WithAbuseGuard(guard),
				realtimeauth.WithEventHook(ev.Hook), realtimeauth.WithLogger(newTextLogger(logs))}, tc.opts...)...)
			q := tc.prep(t, r, guard)
			q.headers = mergeHeaders(q.headers, map[string]string{"User-Agent": ua})
			hr := q.build()
			if tc.build != nil {
				hr = tc.build(q)
			}
			mints, strikes := r.mint.Calls(), guard.count()
			w := httptest.NewRecorder()
			r.h.ServeHTTP(w, hr)

			assertError(t, w, e.Status, e.Code, tc.retry)
			assert.Equal(t, e.Msg, jsonBody(t, w.Body.Bytes())["error"])
			assert.Equal(t, tc.mints, r.mint.Calls()-mints, "mints caused by the request")
			assert.Equal(t, btoi(e.Strike), guard.count()-strikes, "strikes")
			if e.Status == http.StatusMethodNotAllowed {
				assert.NotEmpty(t, w.Header().Get("Allow"))
			}
			id := w.Header().Get("X-Request-Id")
			require.NotEmpty(t, id)
			var mine []realtimeauth.Event
			for _, x := range ev.All() {
				if x.RequestID == id && x.Name != realtimeauth.EventSessionEvicted {
					mine = append(mine, x)
				}
			}
			if e.Event == "" {
				assert.Empty(t, mine, "no event")
				return
			}
			require.Len(t, mine, 1, "one event: %+v", mine)
			x := mine[0]
			assert.Equal(t, e.Event, x.Name)
			assert.Equal(t, e.Severity, x.Severity)
			assert.Equal(t, e.Status, x.Status)
			assert.Equal(t, e.Code, x.Code)
			assert.Equal(t, e.Msg, x.Detail)
			assert.Equal(t, r.clock.Now(), x.Time)
			assert.Equal(t, "203.0.113.7", x.ClientIP)
			assert.Equal(t, ua, x.UserAgent)
			assert.Equal(t, tc.session, x.SessionID != "", "SessionID %q", x.SessionID)
			assert.Equal(t, tc.retry > 0, x.RetryAfter > 0, "RetryAfter %v", x.RetryAfter)
			line := lastLineWith(logs.String(), "request_id="+id)
			require.NotEmpty(t, line, logs.String())
			assert.Contains(t, line, "event="+string(e.Event))
			assert.Contains(t, line, "severity="+string(e.Severity))
			assert.Contains(t, line, "client_ip=203.0.113.7")
		})
	}
	for name := range table {
		assert.True(t, seen[name], "no request is answered by the row %q", name)
	}
}

// TestSuccessEvents: a token and a refresh emit their info event, with the
// request's ID, subject and session; a session pushed out by its client's
// newer one emits session_evicted.
func TestSuccessEvents(t *testing.T) {
	ev := &events{}
	logs := &syncBuffer{}
	r := newRig(t, realtimeauth.WithAuthenticator(bearerAuth), realtimeauth.WithLimits(realtimeauth.Limits{
		MaxRefreshes:         5,
		MinRefreshInterval:   -1,
		MaxSessionsPerClient: 1,
	}), realtimeauth.WithEventHook(ev.Hook), realtimeauth.WithLogger(newTextLogger(logs)))
	w := serveReq(r.h, req{path: tokenURL, headers: as("alice")})
	require.Equal(t, 200, w.Code)
	first := jsonBody(t, w.Body.Bytes())["sessionId"].(string)
	w = serveReq(r.h, req{path: refrURL, headers: as("alice"), body: refreshBody(first)})
	require.Equal(t, 200, w.Code)
	refreshID := w.Header().Get("X-Request-Id")
	w = serveReq(r.h, req{path: tokenURL, headers: as("alice")})
	require.Equal(t, 200, w.Code)
	second := jsonBody(t, w.Body.Bytes())["sessionId"].(string)

	issued := ev.Named(realtimeauth.EventTokenIssued)
	require.Len(t, issued, 2)
	assert.Equal(t, realtimeauth.SeverityInfo, issued[0].Severity)
	assert.Equal(t, "alice", issued[0].Subject)
	assert.Equal(t, first, issued[0].SessionID)
	refreshed := ev.Named(realtimeauth.EventTokenRefreshed)
	require.Len(t, refreshed, 1)
	assert.Equal(t, refreshID, refreshed[0].RequestID)
	assert.Equal(t, first, refreshed[0].SessionID)
	evicted := ev.Named(realtimeauth.EventSessionEvicted)
	require.Len(t, evicted, 1)
	assert.Equal(t, first, evicted[0].SessionID, "the evicted session, not the new one")
	assert.Equal(t, issued[1].RequestID, evicted[0].RequestID, "the request that evicted it")
	assert.NotEqual(t, second, evicted[0].SessionID)
	assert.Contains(t, lastLineWith(logs.String(), "event=token_refreshed"), "request_id="+refreshID)
}

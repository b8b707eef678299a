package realtimeauth_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/realtimeauth/realtimeauth"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestEvents: each decision emits its event, with its fields, through the
// hook and the log.
func TestEvents(t *testing.T) {
	const ua = "test-agent/1.0"
	tests := []struct {
		name     string
		opts     []realtimeauth.Option
		prep     func(t *testing.T, r *rig) req
		event    string
		severity realtimeauth.Severity
		status   int
		code     string
		session  bool // SessionID set
		retry    bool // RetryAfter set
		subject  string
	}{
		{name: "issued", event: realtimeauth.EventTokenIssued, severity: realtimeauth.SeverityInfo, session: true,
			prep: func(*testing.T, *rig) req { return req{path: tokenURL} }},
		{name: "issued with subject", event: realtimeauth.EventTokenIssued, severity: realtimeauth.SeverityInfo, session: true, subject: "alice",
			opts: []realtimeauth.Option{realtimeauth.WithAuthenticator(bearerAuth)},
			prep: func(*testing.T, *rig) req { return req{path: tokenURL, headers: as("alice")} }},
		{name: "refreshed", event: realtimeauth.EventTokenRefreshed, severity: realtimeauth.SeverityInfo, session: true,
			opts: []realtimeauth.Option{realtimeauth.WithRefreshPolicy(5, 0)},
			prep: func(t *testing.T, r *rig) req {
				return req{path: refrURL, body: refreshBody(newSessionAt(t, r, defaultRemote))}
			}},
		{name: "rate limited", event: realtimeauth.EventRateLimitExceeded, severity: realtimeauth.SeverityMedium, status: 429, code: "rate_limited", retry: true,
			opts: []realtimeauth.Option{realtimeauth.WithRateLimit(1, time.Minute)},
			prep: func(t *testing.T, r *rig) req { newSessionAt(t, r, defaultRemote); return req{path: tokenURL} }},
		{name: "origin", event: realtimeauth.EventOriginRejected, severity: realtimeauth.SeverityMedium, status: 403, code: "origin_not_allowed",
			prep: func(*testing.T, *rig) req {
				return req{path: tokenURL, headers: map[string]string{"Origin": "https://evil.example.net"}}
			}},
		{name: "mismatch", event: realtimeauth.EventSessionMismatch, severity: realtimeauth.SeverityHigh, status: 403, code: "session_mismatch", session: true,
			prep: func(t *testing.T, r *rig) req {
				return req{path: refrURL, body: refreshBody(newSessionAt(t, r, "192.0.2.1:1"))}
			}},
		{name: "limit", event: realtimeauth.EventRefreshLimitReached, severity: realtimeauth.SeverityLow, status: 403, code: "refresh_limit_reached", session: true,
			opts: []realtimeauth.Option{realtimeauth.WithRefreshPolicy(1, 0)},
			prep: func(t *testing.T, r *rig) req {
				id := newSessionAt(t, r, defaultRemote)
				serveReq(r.h, req{path: refrURL, body: refreshBody(id)})
				return req{path: refrURL, body: refreshBody(id)}
			}},
		{name: "too soon", event: realtimeauth.EventRefreshTooSoon, severity: realtimeauth.SeverityLow, status: 429, code: "refresh_too_soon", session: true, retry: true,
			prep: func(t *testing.T, r *rig) req {
				return req{path: refrURL, body: refreshBody(newSessionAt(t, r, defaultRemote))}
			}},
		{name: "revoked", event: realtimeauth.EventSessionRevoked, severity: realtimeauth.SeverityMedium, status: 401, code: "session_revoked", session: true,
			prep: func(t *testing.T, r *rig) req {
				id := newSessionAt(t, r, defaultRemote)
				require.NoError(t, r.h.RevokeSession(context.Background(), id))
				return req{path: refrURL, body: refreshBody(id)}
			}},
		{name: "unauthorized", event: realtimeauth.EventUnauthorized, severity: realtimeauth.SeverityMedium, status: 401, code: "unauthorized",
			opts: []realtimeauth.Option{realtimeauth.WithAuthenticator(bearerAuth)},
			prep: func(*testing.T, *rig) req { return req{path: tokenURL} }},
		{name: "upstream", event: realtimeauth.EventUpstreamError, severity: realtimeauth.SeverityHigh, status: 502, code: "upstream_error", session: true,
			prep: func(_ *testing.T, r *rig) req {
				r.mint.SetError(&realtimeauth.UpstreamError{StatusCode: 500})
				return req{path: tokenURL}
			}},
		{name: "blocked", event: realtimeauth.EventClientBlocked, severity: realtimeauth.SeverityHigh, status: 403, code: "blocked", retry: true,
			opts: []realtimeauth.Option{realtimeauth.WithAbuseGuard(1, time.Minute, time.Minute)},
			prep: func(*testing.T, *rig) req { return req{path: tokenURL, body: "{"} }},
		{name: "invalid", event: realtimeauth.EventInvalidRequest, severity: realtimeauth.SeverityLow, status: 400, code: "invalid_request",
			prep: func(*testing.T, *rig) req { return req{path: tokenURL, body: "{"} }},
		{name: "not found", event: realtimeauth.EventSessionNotFound, severity: realtimeauth.SeverityMedium, status: 404, code: "session_not_found", session: true,
			prep: func(*testing.T, *rig) req { return req{path: refrURL, body: refreshBody(uuid.NewString())} }},
		{name: "too many sessions", event: realtimeauth.EventTooManySessions, severity: realtimeauth.SeverityMedium, status: 429, code: "too_many_sessions", subject: "alice",
			opts: []realtimeauth.Option{realtimeauth.WithAuthenticator(bearerAuth), realtimeauth.WithMaxSessionsPerSubject(1)},
			prep: func(_ *testing.T, r *rig) req {
				serveReq(r.h, req{path: tokenURL, headers: as("alice")})
				return req{path: tokenURL, headers: as("alice")}
			}},
		{name: "upstream busy", event: realtimeauth.EventUpstreamBusy, severity: realtimeauth.SeverityHigh, status: 503, code: "upstream_busy", retry: true,
			opts: []realtimeauth.Option{realtimeauth.WithUpstreamRate(1, 1)},
			prep: func(t *testing.T, r *rig) req { newSessionAt(t, r, "192.0.2.1:1"); return req{path: tokenURL} }},
		{name: "store error", event: realtimeauth.EventStoreError, severity: realtimeauth.SeverityHigh, status: 503, code: "store_unavailable",
			opts: []realtimeauth.Option{realtimeauth.WithAbuseStore(failingGuard{})},
			prep: func(*testing.T, *rig) req { return req{path: tokenURL} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev := &events{}
			logs := &syncBuffer{}
			r := newRig(t, append(tc.opts, realtimeauth.WithEventHook(ev.Hook), realtimeauth.WithLogger(newTextLogger(logs)))...)
			q := tc.prep(t, r)
			q.headers = mergeHeaders(q.headers, map[string]string{"User-Agent": ua})
			before := len(ev.Named(tc.event))
			serveReq(r.h, q)
			got := ev.Named(tc.event)
			require.Len(t, got, before+1, "one %s event", tc.event)
			e := got[len(got)-1]
			assert.Equal(t, tc.event, e.Name)
			assert.Equal(t, tc.severity, e.Severity)
			assert.Equal(t, r.clock.Now(), e.Time)
			assert.Equal(t, "203.0.113.7", e.ClientIP)
			assert.Equal(t, ua, e.UserAgent)
			assert.Equal(t, tc.status, e.Status)
			assert.Equal(t, tc.code, e.Code)
			assert.Equal(t, tc.subject, e.Subject)
			assert.Equal(t, tc.session, e.SessionID != "", "SessionID %q", e.SessionID)
			assert.Equal(t, tc.retry, e.RetryAfter > 0, "RetryAfter %v", e.RetryAfter)
			if tc.status != 0 {
				assert.NotEmpty(t, e.Detail, "a refusal says why")
			}
			// The log line carries the same event.
			line := lastLineWith(logs.String(), "event="+tc.event)
			require.NotEmpty(t, line, logs.String())
			assert.Contains(t, line, "client_ip=203.0.113.7")
			assert.Contains(t, line, "severity="+string(tc.severity))
			if tc.session {
				assert.Contains(t, line, "session_id="+e.SessionID)
			}
		})
	}
}

func mergeHeaders(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

func lastLineWith(s, sub string) string {
	lines := strings.Split(s, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], sub) {
			return lines[i]
		}
	}
	return ""
}

// TestNoSecretInLogsOrEvents runs every path against a fake OpenAI that
// echoes the API key in its errors (raw, escaped, in headers), then scans
// every log line and event for the key in each of its forms and for every
// token value issued.
func TestNoSecretInLogsOrEvents(t *testing.T) {
	var mode atomic.Value // "ok", "500", "401", "429", "slow"
	mode.Store("ok")
	var n atomic.Int64
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		switch mode.Load().(string) {
		case "ok":
			okAnswer(fmt.Sprintf("ek_SECRETTOKEN_%d", n.Add(1)), time.Now().Add(time.Minute))(w, r)
		case "slow":
			<-r.Context().Done()
		case "garbage":
			jsonAnswer(200, `{"value":"ek_SECRETTOKEN_bad","expires_at":"soon `+fakeKey+`"}`)(w, r)
		case "echo":
			// The key echoed escaped, as JSON and URLs write it, and in
			// headers (openai_redact_test.go runs every form and place).
			f := keyForms(fakeKey)
			jsonAnswer(401, `{"error":{"message":"`+f["json all lower"]+` `+f["json mixed"]+` `+f["query"]+`"}}`,
				"x-request-id", fakeKey, "X-Echo", fakeKey)(w, r)
		default:
			var status int
			fmt.Sscan(mode.Load().(string), &status)
			jsonAnswer(status, `{"error":{"message":"Incorrect API key provided: `+fakeKey+`. You can find your API key at https://platform.openai.com"}}`, "Retry-After", "1")(w, r)
		}
	})
	m, err := realtimeauth.NewOpenAIMinter(fakeKey, realtimeauth.WithBaseURL(u.srv.URL))
	require.NoError(t, err)
	ev := &events{}
	logs := &syncBuffer{}
	h, err := realtimeauth.New(m,
		realtimeauth.WithAllowedOrigins(origin),
		realtimeauth.WithLogger(newTextLogger(logs)),
		realtimeauth.WithEventHook(ev.Hook),
		realtimeauth.WithAuthenticator(bearerAuth),
		realtimeauth.WithRefreshPolicy(2, 0),
		realtimeauth.WithMaxSessionsPerSubject(3),
		realtimeauth.WithRateLimit(5, time.Minute),
		realtimeauth.WithAbuseGuard(4, time.Minute, time.Minute),
		realtimeauth.WithUpstreamTimeout(200*time.Millisecond),
	)
	require.NoError(t, err)

	var tokens []string
	do := func(q req) {
		t.Helper()
		w := serveReq(h, q)
		assert.NotContains(t, w.Body.String(), fakeKey)
		if tok, ok := jsonBodyOrEmpty(w.Body.Bytes())["token"].(string); ok {
			tokens = append(tokens, tok)
		}
	}
	ip := func(i int) string { return fmt.Sprintf("198.51.100.%d:1", i) }
	tok := func(i int, sub string) req { return req{path: tokenURL, remote: ip(i), headers: as(sub)} }
	refresh := func(i int, sub, id string) req {
		return req{path: refrURL, remote: ip(i), headers: as(sub), body: refreshBody(id)}
	}

	do(tok(1, "alice"))
	do(tok(1, "alice"))
	do(tok(1, "alice"))
	do(tok(1, "alice")) // too many sessions
	ids := []string{}
	for _, e := range ev.Named(realtimeauth.EventTokenIssued) {
		ids = append(ids, e.SessionID)
	}
	require.Len(t, ids, 3)
	do(refresh(1, "alice", ids[0]))
	do(refresh(1, "alice", ids[0]))
	do(refresh(1, "alice", ids[0])) // limit
	do(refresh(1, "bob", ids[1]))   // subject mismatch
	do(refresh(2, "alice", ids[1])) // IP mismatch
	require.NoError(t, h.RevokeSession(context.Background(), ids[2]))
	do(refresh(1, "alice", ids[2]))                                                                  // revoked
	do(req{path: tokenURL, remote: ip(3)})                                                           // unauthorized
	do(req{path: tokenURL, remote: ip(3), headers: map[string]string{"Origin": "https://evil.net"}}) // origin
	do(req{path: tokenURL, remote: ip(3), headers: as("carol"), body: "{"})                          // invalid
	do(refresh(3, "carol", uuid.NewString()))                                                        // not found, blocked
	do(tok(3, "carol"))                                                                              // blocked
	for _, md := range []string{"500", "401", "403", "429", "garbage", "echo", "slow"} {
		mode.Store(md)
		do(tok(4, "dave"))
		_, _ = h.RevokeSubject(context.Background(), "dave")
	}
	mode.Store("ok")
	for range 6 {
		do(tok(5, "erin")) // rate limited at the sixth
	}
	do(req{method: http.MethodGet, path: healthU})

	require.NotEmpty(t, tokens)
	all := logs.String()
	evs := ev.All()
	for _, name := range []string{
		realtimeauth.EventTokenIssued, realtimeauth.EventTokenRefreshed, realtimeauth.EventRateLimitExceeded,
		realtimeauth.EventClientBlocked, realtimeauth.EventOriginRejected, realtimeauth.EventSessionMismatch,
		realtimeauth.EventRefreshLimitReached, realtimeauth.EventSessionRevoked, realtimeauth.EventUnauthorized,
		realtimeauth.EventUpstreamError, realtimeauth.EventInvalidRequest, realtimeauth.EventSessionNotFound,
		realtimeauth.EventTooManySessions,
	} {
		assert.NotEmpty(t, ev.Named(name), "path %s was run", name)
		assert.Contains(t, all, "event="+name)
	}
	assert.Contains(t, all, "upstream_status=401", "upstream failures are logged")
	secrets := append([]string{fakeKey, "ek_SECRETTOKEN"}, tokens...)
	for _, f := range keyForms(fakeKey) {
		secrets = append(secrets, f)
	}
	for _, s := range secrets {
		assert.NotContains(t, all, s)
		for _, e := range evs {
			assert.NotContains(t, fmt.Sprintf("%#v", e), s)
		}
	}
}

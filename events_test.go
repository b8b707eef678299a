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
	m, err := realtimeauth.NewOpenAIMinter(fakeKey, realtimeauth.OpenAIConfig{BaseURL: u.srv.URL})
	require.NoError(t, err)
	ev := &events{}
	logs := &syncBuffer{}
	h, err := realtimeauth.New(m,
		realtimeauth.WithAllowedOrigins(origin),
		realtimeauth.WithLogger(newTextLogger(logs)),
		realtimeauth.WithEventHook(ev.Hook),
		realtimeauth.WithAuthenticator(bearerAuth),
		realtimeauth.WithLimits(realtimeauth.Limits{Sessions: realtimeauth.Rate{N: 5, Per: time.Minute}, MaxSessionsPerSubject: 3,
			MaxRefreshes: 2, MinRefreshInterval: -1, UpstreamTimeout: 200 * time.Millisecond}),
		realtimeauth.WithAbuseGuard(mustGuard(4, time.Minute, time.Minute)),
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
	do(req{path: tokenURL, remote: ip(3), headers: as("carol"), body: "["})                          // invalid
	do(refresh(3, "carol", uuid.NewString()))                                                        // not found, no strike
	do(req{path: tokenURL, remote: ip(3), headers: as("carol"), body: "{"})                          // invalid, blocked
	do(tok(3, "carol"))                                                                              // blocked
	for _, md := range []string{"500", "401", "403", "429", "garbage", "echo", "slow"} {
		mode.Store(md)
		do(tok(4, "dave"))
		_, _ = h.RevokeSubject(context.Background(), "dave")
	}
	mode.Store("ok")
	for range 6 {
		do(tok(5, "erin")) // too many sessions from the fourth
	}
	for i := range 6 {
		do(tok(6, fmt.Sprint("frank", i))) // rate limited at the sixth (dave's failed mints were refunded)
	}
	do(req{method: http.MethodGet, path: healthU})

	require.NotEmpty(t, tokens)
	all := logs.String()
	evs := ev.All()
	for _, name := range []realtimeauth.EventName{
		realtimeauth.EventTokenIssued, realtimeauth.EventTokenRefreshed, realtimeauth.EventRateLimitExceeded,
		realtimeauth.EventClientBlocked, realtimeauth.EventOriginRejected, realtimeauth.EventSessionMismatch,
		realtimeauth.EventRefreshLimitReached, realtimeauth.EventSessionRevoked, realtimeauth.EventUnauthorized,
		realtimeauth.EventUpstreamError, realtimeauth.EventInvalidRequest, realtimeauth.EventSessionNotFound,
		realtimeauth.EventTooManySessions,
	} {
		assert.NotEmpty(t, ev.Named(name), "path %s was run", name)
		assert.Contains(t, all, "event="+string(name))
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

package realtimeauth_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/realtimeauth/realtimeauth"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRequestID: every answer carries its request's ID in X-Request-Id: the
// one a trusted proxy set, when it is short and printable, else a new one;
// the request's events and log lines carry it too.
func TestRequestID(t *testing.T) {
	ev := &events{}
	logs := &syncBuffer{}
	r := newRig(t, realtimeauth.WithTrustedProxies("10.0.0.0/8"), realtimeauth.WithEventHook(ev.Hook),
		realtimeauth.WithLogger(newTextLogger(logs)))
	generated := regexp.MustCompile(`^[0-9a-f]{16}$`)
	proxied := func(id string) map[string]string { return map[string]string{"X-Request-Id": id} }

	for _, tc := range []struct {
		name   string
		q      req
		want   string // "" for a generated one
		status int
	}{
		{"direct client", req{path: tokenURL}, "", 200},
		{"direct client's own ID is not believed", req{path: tokenURL, headers: proxied("forged-id")}, "", 200},
		{"trusted proxy's ID", req{path: tokenURL, remote: "10.0.0.1:1", headers: proxied("lb-7f3a-01")}, "lb-7f3a-01", 200},
		{"trusted proxy's ID with a space", req{path: tokenURL, remote: "10.0.0.1:1", headers: proxied("a b")}, "", 200},
		{"trusted proxy's ID too long", req{path: tokenURL, remote: "10.0.0.1:1", headers: proxied(strings.Repeat("x", 129))}, "", 200},
		{"a refusal", req{path: refrURL, body: `{}`}, "", 400},
		{"not found", req{path: base + "/nope"}, "", 404},
		{"health", req{method: http.MethodGet, path: healthU}, "", 200},
		{"script", req{method: http.MethodGet, path: base + "/client.js"}, "", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := serveReq(r.h, tc.q)
			require.Equal(t, tc.status, w.Code, w.Body.String())
			id := w.Header().Get("X-Request-Id")
			if tc.want != "" {
				assert.Equal(t, tc.want, id)
			} else {
				assert.Regexp(t, generated, id)
			}
		})
	}
	// Two requests never share a generated ID.
	a := serveReq(r.h, req{path: base + "/nope"}).Header().Get("X-Request-Id")
	b := serveReq(r.h, req{path: base + "/nope"}).Header().Get("X-Request-Id")
	assert.NotEqual(t, a, b)

	// The events and the log lines of a request carry its ID.
	w := serveReq(r.h, req{path: tokenURL, remote: "10.0.0.1:1", headers: proxied("trace-42")})
	require.Equal(t, 200, w.Code)
	issued := ev.Named(realtimeauth.EventTokenIssued)
	assert.Equal(t, "trace-42", issued[len(issued)-1].RequestID)
	assert.Contains(t, lastLineWith(logs.String(), "event=token_issued"), "request_id=trace-42")
	r.mint.SetError(&realtimeauth.UpstreamError{StatusCode: 500})
	serveReq(r.h, req{path: tokenURL, remote: "10.0.0.1:1", headers: proxied("trace-43")})
	line := lastLineWith(logs.String(), "event=upstream_error")
	assert.Contains(t, line, "request_id=trace-43")
	assert.Contains(t, line, "upstream_status=500", "the failure's details ride on the event's line")
}

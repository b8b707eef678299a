package realtimeauth_test

// The worst cases of docs/limits.md: each test drives the attacker that
// costs the most under the defaults and counts the mints at the minter.

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// most is the most admissions a limit of n allows in any interval of one
// window's length (docs/limits.md): M = max(n+1, floor(5n/4)).
func most(n int) int { return max(n+1, 5*n/4) }

// burst is the costliest schedule under the allowances' rule (docs/limits.md):
// idle, then at the last second of a quarter-minute open every session the
// clients may, refresh them all 10 and 20 seconds later (the allowances'
// N are used up within the last four quarters), and refresh them all again
// when the first quarter has left those four, where the rule still admits
// M-N more. Each client opens at most perClient sessions. It returns the
// mints counted from the first burst on.
func burst(t *testing.T, r *rig, clients []string, perClient int, subject string) int {
	t.Helper()
	hdr := map[string]string{}
	if subject != "" {
		hdr = as(subject)
	}
	type held struct{ id, remote string }
	var sessions []held
	r.clock.Advance(14 * time.Second) // t0 is on a quarter-minute
	before := r.mint.Calls()
	for _, c := range clients {
		for range perClient {
			w := serveReq(r.h, req{path: tokenURL, remote: c, headers: hdr})
			if w.Code != http.StatusOK {
				break
			}
			sessions = append(sessions, held{jsonBody(t, w.Body.Bytes())["sessionId"].(string), c})
		}
	}
	for _, wait := range []time.Duration{10 * time.Second, 10 * time.Second, 26 * time.Second} {
		r.clock.Advance(wait)
		for _, s := range sessions {
			serveReq(r.h, req{path: refrURL, remote: s.remote, headers: hdr, body: refreshBody(s.id)})
		}
	}
	require.Less(t, r.clock.Now().Sub(t0.Add(14*time.Second)), time.Minute, "all within one minute")
	return r.mint.Calls() - before
}

// TestWorstCaseOneClient: one address mints at most M(30) = 37 in any
// minute (Limits.Mints's default 30 per minute), refreshes included, and
// reaches it.
func TestWorstCaseOneClient(t *testing.T) {
	r := newRig(t, realtimeauth.WithAbuseGuard(nil))
	mc := recordMints(r)
	assert.Equal(t, 37, most(30))
	assert.Equal(t, 37, burst(t, r, []string{defaultRemote}, 10, ""))
	greedy(t, r, []string{defaultRemote}, "", 5*time.Minute, 10*time.Second)
	assert.Equal(t, 37, mc.mostInAnyWindow(time.Minute), "nothing afterwards makes it more")
}

// TestWorstCaseOneSlash48: the /64s of one IPv6 /48 together mint at most
// M(16×30) = 600 in any minute (Limits.PrefixShare's 16), however many /64s.
func TestWorstCaseOneSlash48(t *testing.T) {
	r := newRig(t, realtimeauth.WithAbuseGuard(nil))
	mc := recordMints(r)
	var clients []string
	for i := range 64 {
		clients = append(clients, fmt.Sprintf("[2001:db8:1:%x::1]:443", i))
	}
	assert.Equal(t, 600, most(16*30))
	// Five sessions per /64, so that the /48's allowance binds before the
	// /64s' own.
	assert.Equal(t, 600, burst(t, r, clients, 5, ""))
	greedy(t, r, clients, "", 2*time.Minute, 10*time.Second)
	assert.Equal(t, 600, mc.mostInAnyWindow(time.Minute))
}

// TestWorstCaseOneSubject: a subject has no allowance of its own by
// default, so it costs M(30) = 37 per client it mints from; with
// Limits.SubjectMints {30, time.Minute}, 37 in any minute from any number
// of clients.
func TestWorstCaseOneSubject(t *testing.T) {
	clients := []string{"192.0.2.1:1", "192.0.2.2:1", "192.0.2.3:1"}
	for _, tc := range []struct {
		name string
		opts []realtimeauth.Option
		want int
	}{
		{"default", nil, 3 * 37},
		{"SubjectMints", []realtimeauth.Option{realtimeauth.WithLimits(realtimeauth.Limits{SubjectMints: realtimeauth.Rate{N: 30, Per: time.Minute}})}, 37},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, append([]realtimeauth.Option{realtimeauth.WithAbuseGuard(nil), realtimeauth.WithAuthenticator(bearerAuth)}, tc.opts...)...)
			mc := recordMints(r)
			assert.Equal(t, tc.want, burst(t, r, clients, 10, "alice"))
			greedy(t, r, clients, "alice", 3*time.Minute, 10*time.Second)
			assert.Equal(t, tc.want, mc.mostInAnyWindow(time.Minute))
		})
	}
}

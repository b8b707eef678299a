package realtimeauth_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/realtimeauthtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestClientIP(t *testing.T) {
	tests := []struct {
		name    string
		trusted []string
		remote  string
		xff     []string // X-Forwarded-For header lines
		realIP  string
		want    string
	}{
		{name: "peer", remote: "198.51.100.1:5000", want: "198.51.100.1"},
		{name: "XFF ignored without trusted proxies", remote: "198.51.100.1:5000", xff: []string{"1.2.3.4"}, want: "198.51.100.1"},
		{name: "X-Real-IP ignored", remote: "198.51.100.1:5000", realIP: "1.2.3.4", want: "198.51.100.1"},
		{name: "XFF ignored from an untrusted peer", trusted: []string{"10.0.0.0/8"}, remote: "198.51.100.1:5000", xff: []string{"1.2.3.4"}, want: "198.51.100.1"},
		{name: "X-Real-IP ignored from a trusted peer", trusted: []string{"10.0.0.0/8"}, remote: "10.0.0.1:5000", realIP: "1.2.3.4", want: "10.0.0.1"},
		{name: "one hop", trusted: []string{"10.0.0.0/8"}, remote: "10.0.0.1:5000", xff: []string{"198.51.100.7"}, want: "198.51.100.7"},
		{name: "forged left-most entry", trusted: []string{"10.0.0.0/8"}, remote: "10.0.0.1:5000", xff: []string{"6.6.6.6, 198.51.100.7"}, want: "198.51.100.7"},
		{name: "right-most untrusted past trusted hops", trusted: []string{"10.0.0.0/8", "192.0.2.5"}, remote: "10.0.0.1:5000", xff: []string{"6.6.6.6, 198.51.100.7, 192.0.2.5, 10.9.9.9"}, want: "198.51.100.7"},
		{name: "multiple header lines", trusted: []string{"10.0.0.0/8"}, remote: "10.0.0.1:5000", xff: []string{"6.6.6.6", "198.51.100.7, 10.0.0.2"}, want: "198.51.100.7"},
		{name: "multiple lines, client in the first", trusted: []string{"10.0.0.0/8"}, remote: "10.0.0.1:5000", xff: []string{"198.51.100.7", "10.0.0.2"}, want: "198.51.100.7"},
		{name: "entry with port", trusted: []string{"10.0.0.0/8"}, remote: "10.0.0.1:5000", xff: []string{"198.51.100.7:1234"}, want: "198.51.100.7"},
		{name: "IPv6 entry with port", trusted: []string{"10.0.0.0/8"}, remote: "10.0.0.1:5000", xff: []string{"[2001:db8::7]:1234"}, want: "2001:db8::7"},
		{name: "garbage stops at the last trusted hop", trusted: []string{"10.0.0.0/8"}, remote: "10.0.0.1:5000", xff: []string{"198.51.100.7, garbage, 10.0.0.2"}, want: "10.0.0.2"},
		{name: "all trusted", trusted: []string{"10.0.0.0/8"}, remote: "10.0.0.1:5000", xff: []string{"10.0.0.3, 10.0.0.2"}, want: "10.0.0.3"},
		{name: "empty XFF", trusted: []string{"10.0.0.0/8"}, remote: "10.0.0.1:5000", xff: []string{""}, want: "10.0.0.1"},
		{name: "mapped peer", remote: "[::ffff:198.51.100.1]:5000", want: "198.51.100.1"},
		{name: "mapped XFF entry", trusted: []string{"10.0.0.0/8"}, remote: "10.0.0.1:5000", xff: []string{"::ffff:198.51.100.7"}, want: "198.51.100.7"},
		{name: "mapped trusted peer", trusted: []string{"10.0.0.0/8"}, remote: "[::ffff:10.0.0.1]:5000", xff: []string{"198.51.100.7"}, want: "198.51.100.7"},
		{name: "mapped trusted CIDR", trusted: []string{"::ffff:10.0.0.0/104"}, remote: "10.0.0.1:5000", xff: []string{"198.51.100.7"}, want: "198.51.100.7"},
		{name: "IPv6 peer", remote: "[2001:db8::1%eth0]:5000", want: "2001:db8::1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := realtimeauth.New(&realtimeauthtest.Minter{}, realtimeauth.WithTrustedProxies(tc.trusted...))
			require.NoError(t, err)
			r := req{path: tokenURL, remote: tc.remote}.build()
			for _, line := range tc.xff {
				r.Header.Add("X-Forwarded-For", line)
			}
			if tc.realIP != "" {
				r.Header.Set("X-Real-IP", tc.realIP)
			}
			assert.Equal(t, tc.want, h.ClientIP(r).String())
		})
	}
}

func TestTrustedProxiesRefusedAtNew(t *testing.T) {
	for _, bad := range []string{"10.0.0.0/33", "not-an-ip", "10.0.0.1/x", "300.1.1.1"} {
		_, err := realtimeauth.New(&realtimeauthtest.Minter{}, realtimeauth.WithTrustedProxies(bad))
		require.Error(t, err, bad)
		assert.Contains(t, err.Error(), "WithTrustedProxies")
	}
}

// TestForgedXFFDoesNotDodgeTheLimit, over TCP: a client rotating forged
// X-Forwarded-For values is limited all the same, whether it talks to the
// server directly or through a trusted proxy that appends its address.
func TestForgedXFFDoesNotDodgeTheLimit(t *testing.T) {
	const limit = 3
	r := newRig(t, realtimeauth.WithLimits(realtimeauth.Limits{Sessions: realtimeauth.Rate{N: limit, Per: time.Minute}}),
		realtimeauth.WithTrustedProxies("127.0.0.3"), realtimeauth.WithAbuseGuard(nil))
	srv := tcpServer(t, r.h)

	direct := clientFrom("127.0.0.2")
	proxy := clientFrom("127.0.0.3")
	for i := range 10 {
		forged := fmt.Sprintf("203.0.113.%d", i+1)
		st, _, _ := post(t, direct, srv.URL+tokenURL, "", map[string]string{"X-Forwarded-For": forged, "X-Real-IP": forged})
		st2, _, _ := post(t, proxy, srv.URL+tokenURL, "", map[string]string{"X-Forwarded-For": forged + ", 198.51.100.9"})
		if i < limit {
			assert.Equal(t, 200, st, "request %d", i)
			assert.Equal(t, 200, st2, "request %d", i)
		} else {
			assert.Equal(t, 429, st, "request %d", i)
			assert.Equal(t, 429, st2, "request %d", i)
		}
	}
	ips := map[string]int{}
	for _, q := range r.mint.Requests() {
		ips[q.ClientIP]++
	}
	assert.Equal(t, map[string]int{"127.0.0.2": limit, "198.51.100.9": limit}, ips)
}

// TestIPv6SharesLimitPerSlash64: one /64 is one client for the limits,
// while the session keeps the full address.
func TestIPv6SharesLimitPerSlash64(t *testing.T) {
	r := newRig(t, realtimeauth.WithLimits(realtimeauth.Limits{
		Sessions:           realtimeauth.Rate{N: 2, Per: time.Minute},
		MaxRefreshes:       5,
		MinRefreshInterval: -1,
	}))
	id := issueToken(t, r.h, "[2001:db8:1:2::1]:4000")["sessionId"].(string)
	issueToken(t, r.h, "[2001:db8:1:2:ffff::9]:4000")
	assertError(t, serveReq(r.h, req{path: tokenURL, remote: "[2001:db8:1:2::3]:4000"}), 429, "rate_limited", -1)
	issueToken(t, r.h, "[2001:db8:1:3::1]:4000") // the next /64
	assert.Equal(t, "2001:db8:1:2::1", r.mint.Requests()[0].ClientIP)

	// The session is bound to the full address, not the /64.
	assertError(t, serveReq(r.h, req{path: refrURL, remote: "[2001:db8:1:2::2]:4000", body: refreshBody(id)}), 403, "session_mismatch", 0)
	w := serveReq(r.h, req{path: refrURL, remote: "[2001:db8:1:2::1]:4001", body: refreshBody(id)})
	assert.Equal(t, http.StatusOK, w.Code, w.Body.String())
}

// TestIPv4MappedCountsAsIPv4: an IPv4-mapped IPv6 peer is the same client
// as its IPv4 address, for the limit and for the session.
func TestIPv4MappedCountsAsIPv4(t *testing.T) {
	r := newRig(t, realtimeauth.WithLimits(realtimeauth.Limits{
		Sessions:           realtimeauth.Rate{N: 1, Per: time.Minute},
		MaxRefreshes:       5,
		MinRefreshInterval: -1,
	}))
	id := issueToken(t, r.h, "[::ffff:198.51.100.1]:4000")["sessionId"].(string)
	assert.Equal(t, "198.51.100.1", r.mint.Requests()[0].ClientIP)
	assertError(t, serveReq(r.h, req{path: tokenURL, remote: "198.51.100.1:4001"}), 429, "rate_limited", -1)
	w := serveReq(r.h, req{path: refrURL, remote: "198.51.100.1:4002", body: refreshBody(id)})
	assert.Equal(t, http.StatusOK, w.Code, w.Body.String())
}

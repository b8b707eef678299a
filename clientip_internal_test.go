package realtimeauth

import (
	"net/http"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestAddrStringReusesRemoteAddr(t *testing.T) {
	for _, c := range []struct{ remote, want string }{
		{"192.0.2.1:443", "192.0.2.1"},
		{"[2001:db8::1]:443", "2001:db8::1"},
		{"[::ffff:192.0.2.1]:443", "192.0.2.1"}, // unmapped: a new string
		{"[fe80::1%eth0]:443", "fe80::1"},       // zone dropped
		{"garbage", "0.0.0.0"},
	} {
		r := &http.Request{RemoteAddr: c.remote}
		a := peerAddr(r)
		assert.Equal(t, c.want, addrString(a, c.remote), c.remote)
		assert.Equal(t, a.String(), addrString(a, c.remote), c.remote)
	}
	assert.Equal(t, "198.51.100.7", addrString(netip.MustParseAddr("198.51.100.7"), "192.0.2.1:443"))
}

package realtimeauth

import (
	"net/http"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestSingleSessionIDMatchesDecoder(t *testing.T) {
	const id = "2f1d7a3c-5b6e-4f70-8a9b-0c1d2e3f4a5b"
	bodies := []string{
		`{"sessionId":"` + id + `"}`,
		" {\n\t\"sessionId\" : \"" + id + "\" \r\n} ",
		`{"sessionId":""}`,
		`{"sessionId":"not-a-uuid"}`,
		`{"sessionId":"` + id + `","x":1}`,
		`{"x":1,"sessionId":"` + id + `"}`,
		`{"sessionId":"` + id + `","sessionId":"` + id + `"}`,
		`{"session\u0049d":"` + id + `"}`,
		`{"sessionId":"2f1d7a3c-5b6e-4f70-8a9b-0c1d2e3f4a5\u0062"}`,
		`{"sessionId":12}`,
		`{"sessionId":null}`,
		`{"sessionId":"` + id + `"`,
		`{}`,
		`[]`,
	}
	for _, body := range bodies {
		wantID, wantErr := parseRefreshBody([]byte(body))
		if sid, ok := singleSessionID([]byte(body)); ok {
			assert.True(t, isJSONObject([]byte(body)), body)
			gotID, gotErr := checkSessionID(sid)
			assert.Equal(t, wantID, gotID, body)
			assert.Equal(t, wantErr, gotErr, body)
		}
		if isJSONObject([]byte(body)) {
			// The general path, which the fast path short-cuts, agrees.
			decID, decErr := decodeRefreshBody([]byte(body))
			assert.Equal(t, wantID, decID, body)
			assert.Equal(t, wantErr, decErr, body)
		}
	}
	_, ok := singleSessionID([]byte(bodies[0]))
	assert.True(t, ok, "the plain body takes the fast path")
	_, ok = singleSessionID([]byte(bodies[7]))
	assert.False(t, ok, "an escaped key takes the decoder")
}

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

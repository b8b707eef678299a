package realtimeauth_test

// Findings of the security review (branch attack), each landed with its fix.

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/calls"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// plainKey is an API key of OpenAI's own alphabet, which a call ID's
// pattern ([A-Za-z0-9_-]) also accepts.
const plainKey = "sk-proj-AbCdEf0123456789_ghIJ-klMN"

// TestAttackTokenValueEchoesTheKey: an upstream (a misconfigured base URL,
// a proxy in front of OpenAI) that answers 200 with the Authorization it
// received as the token's value has the handler hand the API key to the
// browser. The minter should refuse a value that holds its own key (or one
// that is not an ek_ key), as a 502 upstream_error.
func TestAttackTokenValueEchoesTheKey(t *testing.T) {
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		v := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		jsonAnswer(200, fmt.Sprintf(`{"value":"ek_%s","expires_at":%d}`, v, time.Now().Add(time.Minute).Unix()))(w, r)
	})
	m, err := realtimeauth.NewOpenAIMinter(plainKey, realtimeauth.OpenAIConfig{BaseURL: u.srv.URL})
	require.NoError(t, err)
	h, err := realtimeauth.New(m, realtimeauth.WithLogger(quietLogger()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Close() })
	w := serveReq(h, req{path: tokenURL})
	assert.NotContains(t, w.Body.String(), plainKey, "the API key in the answer to the browser (status %d)", w.Code)
	assert.Equal(t, http.StatusBadGateway, w.Code)
	assert.Contains(t, w.Body.String(), `"code":"upstream_error"`)
}

// TestAttackCallIDEchoesTheKey: the relay's call ID comes from the
// upstream's Location, checked only against [A-Za-z0-9_-]{1,128}, which an
// OpenAI key matches; the relay puts the ID in its own Location, its
// events and its logs. An upstream whose Location echoes the key makes
// Call return the key as the call ID (and its SDP answer is passed on
// unchecked too). Call should refuse an answer that holds the key.
func TestAttackCallIDEchoesTheKey(t *testing.T) {
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		v := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		w.Header().Set("Location", "/v1/realtime/calls/"+v)
		w.Header().Set("Content-Type", "application/sdp")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, "v=0\r\ns=%s\r\n", v)
	})
	m, err := realtimeauth.NewOpenAIMinter(plainKey, realtimeauth.OpenAIConfig{BaseURL: u.srv.URL})
	require.NoError(t, err)
	a, err := m.(calls.Upstream).Call(context.Background(), calls.Request{SessionID: "s", Offer: "v=0\r\n"})
	require.Error(t, err, "an answer holding the key is refused")
	if err == nil {
		assert.NotContains(t, a.ID, plainKey, "the API key as the call ID")
		assert.NotContains(t, a.SDP, plainKey, "the API key in the SDP answer")
	} else {
		assert.NotContains(t, err.Error(), plainKey)
	}
}

// TestAttackRelayLocationEchoesTheKey: through the handler, an upstream
// whose Location echoes the key as the call ID has the relay answer the
// browser with the API key in its own Location header.
func TestAttackRelayLocationEchoesTheKey(t *testing.T) {
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		v := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		w.Header().Set("Location", "/v1/realtime/calls/"+v)
		w.Header().Set("Content-Type", "application/sdp")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprint(w, "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n")
	})
	m, err := realtimeauth.NewOpenAIMinter(plainKey, realtimeauth.OpenAIConfig{BaseURL: u.srv.URL})
	require.NoError(t, err)
	ev := &events{}
	h, err := realtimeauth.New(m, realtimeauth.WithLogger(quietLogger()), realtimeauth.WithEventHook(ev.Hook))
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Close() })
	w := call(h, "", nil)
	assert.NotContains(t, w.Header().Get("Location"), plainKey, "the API key in the relay's Location (status %d)", w.Code)
	assert.Equal(t, http.StatusBadGateway, w.Code)
	assert.Contains(t, w.Body.String(), `"code":"upstream_error"`)
	for _, e := range ev.All() {
		assert.NotContains(t, fmt.Sprintf("%#v", e), plainKey, "the API key in event %s", e.Name)
	}
}

// TestCallAnswerHoldingAnEncodedKey: the relay refuses a call answer whose
// Location or SDP holds the key in any form the redaction knows, and says
// so without the key.
func TestCallAnswerHoldingAnEncodedKey(t *testing.T) {
	forms := map[string]string{
		"url-escaped":  url.PathEscape(strings.ReplaceAll(plainKey, "-", "%2D")),
		"hex-escaped":  strings.ReplaceAll(plainKey, "_", "%5f"),
		"json-escaped": strings.ReplaceAll(plainKey, "-", `\u002d`),
	}
	for name, form := range forms {
		for _, where := range []string{"location", "sdp"} {
			t.Run(name+" in "+where, func(t *testing.T) {
				u := newUpstream(t, func(w http.ResponseWriter, _ *http.Request) {
					id, sdp := "rtc_ok", "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
					if where == "location" {
						id = form
					} else {
						sdp += "a=x:" + form + "\r\n"
					}
					w.Header().Set("Location", "/v1/realtime/calls/"+id)
					w.WriteHeader(http.StatusCreated)
					fmt.Fprint(w, sdp)
				})
				m, err := realtimeauth.NewOpenAIMinter(plainKey, realtimeauth.OpenAIConfig{BaseURL: u.srv.URL, MaxRetries: 3})
				require.NoError(t, err)
				_, err = m.(calls.Upstream).Call(context.Background(), calls.Request{SessionID: "s", Offer: "v=0\r\n"})
				var ue *realtimeauth.UpstreamError
				require.ErrorAs(t, err, &ue)
				assert.Equal(t, 1, ue.Attempts, "never retried")
				assert.NotContains(t, err.Error(), plainKey)
				assert.NotContains(t, err.Error(), form)
			})
		}
	}
}

// TestAttackOneSlash48HoldsManyCalls: the allowances count one IPv6 /48 as
// at most 16 clients, but the cap on live calls (Limits.MaxCallsPerClient,
// default 2) is per /64 only. A call lasts up to an hour, and every live
// call is paid for by the minute: one /48 that places calls from its /64s
// holds 160 live calls after one minute (its new-session allowance), and
// would hold 9,600 after an hour, where 16 clients hold 32. The call cap
// should count a /48 as the allowances do (16 × the per-client cap).
func TestAttackOneSlash48HoldsManyCalls(t *testing.T) {
	r := newCallRig(t, realtimeauth.WithAbuseGuard(nil))
	placed := 0
	for i := range 200 {
		if call(r.h, fmt.Sprintf("[2001:db8:5:%x::1]:443", i), nil).Code == http.StatusCreated {
			placed++
		}
	}
	assert.LessOrEqual(t, activeCalls(t, r.h), 16*2, "live calls of one /48 (%d placed, %d upstream)", placed, len(r.up.Calls()))
	assert.Equal(t, 16*2, placed, "exactly the /48's share is placed")
	assert.Len(t, r.up.Calls(), 16*2, "a call over the /48's cap reaches no upstream")
	w := call(r.h, "[2001:db8:5:ffff::1]:443", nil)
	assert.Equal(t, http.StatusTooManyRequests, w.Code)
	assert.Contains(t, w.Body.String(), `"code":"too_many_calls"`)
	assert.Equal(t, http.StatusCreated, call(r.h, "[2001:db8:6::1]:443", nil).Code, "another /48 has its own share")
}

// TestCallPrefixCapFollowsThePrefixShare: the /48's cap on live calls is
// Limits.PrefixShare times MaxCallsPerClient.
func TestCallPrefixCapFollowsThePrefixShare(t *testing.T) {
	r := newCallRig(t, realtimeauth.WithAbuseGuard(nil), realtimeauth.WithLimits(realtimeauth.Limits{
		PrefixShare:       2,
		MaxCallsPerClient: 3,
	}))
	placed := 0
	for i := range 10 {
		if call(r.h, fmt.Sprintf("[2001:db8:7:%x::1]:443", i), nil).Code == http.StatusCreated {
			placed++
		}
	}
	assert.Equal(t, 2*3, placed)
	assert.Equal(t, 2*3, activeCalls(t, r.h))
}

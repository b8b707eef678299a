package realtimeauth_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/calls"
	"github.com/realtimeauth/realtimeauth/realtimeauthtest"
)

const testOffer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n" +
	"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n" +
	"m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:1\r\n"

func newCallUpstream(t *testing.T) (*realtimeauthtest.Upstream, *httptest.Server) {
	t.Helper()
	u := &realtimeauthtest.Upstream{Key: fakeKey}
	srv := httptest.NewServer(u)
	t.Cleanup(srv.Close)
	return u, srv
}

// callMinter is what NewOpenAIMinter returns: a Minter that places calls.
type callMinter interface {
	realtimeauth.Minter
	calls.Upstream
}

// newCallMinter is an OpenAI minter of cfg (if any) against base, whose
// retries wait a millisecond.
func newCallMinter(t *testing.T, base string, cfg ...realtimeauth.OpenAIConfig) callMinter {
	t.Helper()
	c := realtimeauth.OpenAIConfig{}
	if len(cfg) > 0 {
		c = cfg[0]
	}
	c.BaseURL, c.RetryBackoff, c.MaxRetryBackoff = base, time.Millisecond, time.Millisecond
	m, err := realtimeauth.NewOpenAIMinter(fakeKey, c)
	require.NoError(t, err)
	return m.(callMinter)
}

func TestOpenAICallRequestShape(t *testing.T) {
	u, srv := newCallUpstream(t)
	m := newCallMinter(t, srv.URL+"/v1", realtimeauth.OpenAIConfig{Model: "gpt-realtime-mini",
		Session: json.RawMessage(`{"instructions":"be brief","audio":{"output":{"voice":"ash"}}}`)})
	ans, err := m.Call(context.Background(), calls.Request{
		SessionID: "s-1", ClientIP: "10.0.0.1", Subject: "alice",
		Session: json.RawMessage(`{"instructions":"per request"}`), Offer: testOffer,
	})
	require.NoError(t, err)
	placed := u.Calls()
	require.Len(t, placed, 1)
	c := placed[0]
	assert.Equal(t, c.ID, ans.ID, "the call ID comes from Location")
	assert.True(t, strings.HasPrefix(ans.SDP, "v=0\r\n"))
	assert.Contains(t, ans.SDP, "a=mid:1")
	assert.Equal(t, testOffer, c.Offer)
	assert.JSONEq(t, `{"type":"realtime","model":"gpt-realtime-mini","instructions":"per request","audio":{"output":{"voice":"ash"}}}`, string(c.Session))
	assert.Equal(t, "Bearer "+fakeKey, c.Header.Get("Authorization"))
	assert.Equal(t, "application/sdp", c.Header.Get("Accept"))
	sid := c.Header.Get("OpenAI-Safety-Identifier")
	assert.Len(t, sid, 32)
	assert.NotContains(t, sid, "alice")

	// Anonymous: the session's hash, another identifier.
	_, err = m.Call(context.Background(), calls.Request{SessionID: "s-2", Offer: testOffer})
	require.NoError(t, err)
	anon := u.Calls()[1].Header.Get("OpenAI-Safety-Identifier")
	assert.Len(t, anon, 32)
	assert.NotEqual(t, sid, anon)
	_, err = m.Call(context.Background(), calls.Request{SessionID: "s-3", Subject: "alice", Offer: testOffer})
	require.NoError(t, err)
	assert.Equal(t, sid, u.Calls()[2].Header.Get("OpenAI-Safety-Identifier"), "one subject, one identifier")
}

func TestOpenAICallAzure(t *testing.T) {
	u, srv := newCallUpstream(t)
	m := newCallMinter(t, srv.URL+"/openai/v1", realtimeauth.OpenAIConfig{AzureResource: "myres", Model: "my-deployment"})
	_, err := m.Call(context.Background(), calls.Request{SessionID: "s", Offer: testOffer})
	require.NoError(t, err)
	c := u.Calls()[0]
	assert.Equal(t, fakeKey, c.Header.Get("api-key"))
	assert.Empty(t, c.Header.Get("Authorization"))
	assert.JSONEq(t, `{"type":"realtime","model":"my-deployment"}`, string(c.Session))
	require.NoError(t, m.Hangup(context.Background(), c.ID))
	assert.Equal(t, []string{c.ID}, u.Hangups())

	sb := m.Sideband("rtc_x")
	assert.Equal(t, "ws"+strings.TrimPrefix(srv.URL, "http")+"/openai/v1/realtime?call_id=rtc_x", sb.URL)
	assert.Equal(t, fakeKey, sb.Header.Get("api-key"))
}

func TestOpenAISideband(t *testing.T) {
	mi, err := realtimeauth.NewOpenAIMinter(fakeKey, realtimeauth.OpenAIConfig{})
	require.NoError(t, err)
	m := mi.(calls.Upstream)
	sb := m.Sideband("rtc_abc")
	assert.Equal(t, calls.Sideband{
		CallID: "rtc_abc", URL: "wss://api.openai.com/v1/realtime?call_id=rtc_abc",
		Header: http.Header{"Authorization": {"Bearer " + fakeKey}},
	}, sb)
	m = newCallMinter(t, "http://127.0.0.1:9/v1/")
	assert.Equal(t, "ws://127.0.0.1:9/v1/realtime?call_id=rtc_abc", m.Sideband("rtc_abc").URL)
}

func TestOpenAICallRetriesAndFailures(t *testing.T) {
	u, srv := newCallUpstream(t)
	var fails atomic.Int32
	fails.Store(2)
	u.Fail = func(r *http.Request) int {
		if fails.Add(-1) >= 0 {
			return http.StatusServiceUnavailable
		}
		return 0
	}
	m := newCallMinter(t, srv.URL+"/v1")
	ans, err := m.Call(context.Background(), calls.Request{SessionID: "s", Offer: testOffer})
	require.NoError(t, err, "two 503s, then the call: the default 2 retries")
	assert.NotEmpty(t, ans.ID)

	fails.Store(100)
	_, err = m.Call(context.Background(), calls.Request{SessionID: "s", Offer: testOffer})
	var ue *realtimeauth.UpstreamError
	require.ErrorAs(t, err, &ue)
	assert.Equal(t, http.StatusServiceUnavailable, ue.StatusCode)
	assert.Equal(t, 3, ue.Attempts)

	u.Fail = func(*http.Request) int { return http.StatusBadRequest }
	_, err = m.Call(context.Background(), calls.Request{SessionID: "s", Offer: testOffer})
	require.ErrorAs(t, err, &ue)
	assert.Equal(t, 1, ue.Attempts, "a 400 is not retried")
	assert.NotContains(t, err.Error(), fakeKey)

	_, err = m.Call(context.Background(), calls.Request{SessionID: "s", Offer: " "})
	assert.Error(t, err, "an empty offer never leaves")
	_, err = m.Call(context.Background(), calls.Request{Offer: testOffer, Session: json.RawMessage(`[1]`)})
	assert.Error(t, err)
}

// TestOpenAICallBadAnswers: an answer the relay cannot use is an upstream
// error, never retried, whatever the status.
func TestOpenAICallBadAnswers(t *testing.T) {
	for name, answer := range map[string]func(w http.ResponseWriter){
		"no Location": func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write([]byte("v=0\r\n"))
		},
		"Location elsewhere": func(w http.ResponseWriter) {
			w.Header().Set("Location", "/v1/other/rtc_1")
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write([]byte("v=0\r\n"))
		},
		"bad call ID": func(w http.ResponseWriter) {
			w.Header().Set("Location", "/v1/realtime/calls/rtc%20x%0d")
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write([]byte("v=0\r\n"))
		},
		"no SDP": func(w http.ResponseWriter) {
			w.Header().Set("Location", "/v1/realtime/calls/rtc_1")
			w.WriteHeader(http.StatusCreated)
		},
		"a 204": func(w http.ResponseWriter) { w.WriteHeader(http.StatusNoContent) },
		"a redirect": func(w http.ResponseWriter) {
			w.Header().Set("Location", "/v1/realtime/calls/rtc_1")
			w.WriteHeader(http.StatusFound)
		},
	} {
		t.Run(name, func(t *testing.T) {
			var n atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n.Add(1)
				answer(w)
			}))
			defer srv.Close()
			m := newCallMinter(t, srv.URL+"/v1", realtimeauth.OpenAIConfig{HTTPClient: &http.Client{
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			}})
			_, err := m.Call(context.Background(), calls.Request{SessionID: "s", Offer: testOffer})
			var ue *realtimeauth.UpstreamError
			require.ErrorAs(t, err, &ue)
			assert.Equal(t, int32(1), n.Load())
		})
	}
	// An absolute Location works as a path does.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "https://api.openai.com/v1/realtime/calls/rtc_abs/")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte("v=0\r\n"))
	}))
	defer srv.Close()
	ans, err := newCallMinter(t, srv.URL+"/v1").Call(context.Background(), calls.Request{Offer: testOffer})
	require.NoError(t, err)
	assert.Equal(t, "rtc_abs", ans.ID)
}

func TestOpenAIHangup(t *testing.T) {
	u, srv := newCallUpstream(t)
	m := newCallMinter(t, srv.URL+"/v1")
	ans, err := m.Call(context.Background(), calls.Request{SessionID: "s", Offer: testOffer})
	require.NoError(t, err)
	require.True(t, u.Live(ans.ID))
	require.NoError(t, m.Hangup(context.Background(), ans.ID))
	assert.False(t, u.Live(ans.ID))
	require.NoError(t, m.Hangup(context.Background(), ans.ID), "a call that has ended (404) is hung up")
	assert.Equal(t, []string{ans.ID, ans.ID}, u.Hangups())

	assert.Error(t, m.Hangup(context.Background(), "../client_secrets"), "no path tricks")

	var fails atomic.Int32
	fails.Store(1)
	u.Fail = func(*http.Request) int {
		if fails.Add(-1) >= 0 {
			return http.StatusBadGateway
		}
		return 0
	}
	ans, err = m.Call(context.Background(), calls.Request{SessionID: "s", Offer: testOffer})
	require.NoError(t, err)
	fails.Store(1)
	require.NoError(t, m.Hangup(context.Background(), ans.ID), "a 502 is retried")
	u.Fail = func(*http.Request) int { return http.StatusForbidden }
	var ue *realtimeauth.UpstreamError
	require.ErrorAs(t, m.Hangup(context.Background(), "rtc_other"), &ue)
	assert.Equal(t, http.StatusForbidden, ue.StatusCode)
	assert.Equal(t, 1, ue.Attempts)
}

func TestAnswerSDPMirrorsTheOffer(t *testing.T) {
	a := realtimeauthtest.AnswerSDP(testOffer)
	assert.Contains(t, a, "a=group:BUNDLE 0 1\r\n")
	assert.Contains(t, a, "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n")
	assert.Contains(t, a, "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n")
}

// TestOpenAICallRedactsTheKey: an upstream that echoes the key in its
// error, its x-request-id or the hang-up's answer leaves no trace of it.
func TestOpenAICallRedactsTheKey(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("x-request-id", "req_"+fakeKey)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":{"message":"Incorrect API key provided: ` + fakeKey + `"}}`))
	}))
	defer srv.Close()
	m := newCallMinter(t, srv.URL+"/v1")
	_, err := m.Call(context.Background(), calls.Request{SessionID: "s", Offer: testOffer})
	require.Error(t, err)
	assert.NotContains(t, err.Error(), fakeKey)
	var ue *realtimeauth.UpstreamError
	require.ErrorAs(t, err, &ue)
	assert.NotContains(t, ue.RequestID, fakeKey)
	err = m.Hangup(context.Background(), "rtc_1")
	require.Error(t, err)
	assert.NotContains(t, err.Error(), fakeKey)
}

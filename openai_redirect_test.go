package realtimeauth_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// elsewhere is a server the upstream redirects to: it records every request
// and would mint a token, so that a test sees any key or token that goes
// there.
type elsewhere struct {
	srv  *httptest.Server
	mu   sync.Mutex
	hdrs []http.Header
}

func newElsewhere(t *testing.T, tls bool) *elsewhere {
	t.Helper()
	e := &elsewhere{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.hdrs = append(e.hdrs, r.Header.Clone())
		e.mu.Unlock()
		okAnswer("ek_from_elsewhere", time.Now().Add(time.Minute))(w, r)
	})
	if tls {
		e.srv = httptest.NewTLSServer(h)
	} else {
		e.srv = httptest.NewServer(h)
	}
	t.Cleanup(e.srv.Close)
	return e
}

func (e *elsewhere) requests() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.hdrs)
}

func redirectTo(status int, loc string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, loc, status)
	}
}

// TestOpenAIMinterRefusesRedirects: the default client follows no
// redirect, for Bearer and Azure's api-key alike, whatever the status; the
// redirect is a failed mint that names its status and target host, is not
// retried, and the key never reaches the target.
func TestOpenAIMinterRefusesRedirects(t *testing.T) {
	for _, azure := range []bool{false, true} {
		for _, status := range []int{301, 302, 303, 307, 308} {
			other := newElsewhere(t, false)
			u := newUpstream(t, redirectTo(status, other.srv.URL+"/v1/realtime/client_secrets?k=1"))
			cfg := realtimeauth.OpenAIConfig{BaseURL: u.srv.URL + "/v1", MaxRetries: 2}
			if azure {
				cfg.AzureResource, cfg.Model = "res", "dep"
			}
			m, err := realtimeauth.NewOpenAIMinter(fakeKey, cfg)
			require.NoError(t, err)
			_, err = m.Mint(context.Background(), realtimeauth.MintRequest{SessionID: "s", TTL: time.Minute})
			var ue *realtimeauth.UpstreamError
			require.ErrorAs(t, err, &ue, "azure %v, %d", azure, status)
			assert.Equal(t, status, ue.StatusCode)
			assert.Equal(t, 1, ue.Attempts, "a redirect is not retried")
			host := strings.TrimPrefix(other.srv.URL, "http://")
			assert.Equal(t, "redirect to http://"+host+" refused", ue.Message)
			assert.NotContains(t, ue.Error(), "k=1", "only the host is named")
			assert.Zero(t, other.requests(), "azure %v, %d: nothing went to the redirect's target", azure, status)
			assert.Equal(t, 1, u.count())
		}
	}
}

// TestOpenAIMinterRedirectThroughHandler: the handler answers 502
// upstream_error and logs the status and target host, never the key.
func TestOpenAIMinterRedirectThroughHandler(t *testing.T) {
	other := newElsewhere(t, false)
	u := newUpstream(t, redirectTo(http.StatusTemporaryRedirect, other.srv.URL+"/steal?key="+fakeKey))
	m, err := realtimeauth.NewOpenAIMinter(fakeKey, realtimeauth.OpenAIConfig{BaseURL: u.srv.URL})
	require.NoError(t, err)
	logs := &syncBuffer{}
	ev := &events{}
	h, err := realtimeauth.New(m, realtimeauth.WithAllowedOrigins(origin),
		realtimeauth.WithLogger(newTextLogger(logs)), realtimeauth.WithEventHook(ev.Hook))
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Close() })

	w := serveReq(h, req{path: tokenURL})
	assert.Equal(t, http.StatusBadGateway, w.Code)
	assert.Equal(t, "upstream_error", jsonBody(t, w.Body.Bytes())["code"])
	line := lastLineWith(logs.String(), "event=upstream_error")
	require.NotEmpty(t, line, logs.String())
	assert.Contains(t, line, "upstream_status=307")
	assert.Contains(t, line, strings.TrimPrefix(other.srv.URL, "http://"))
	assert.NotContains(t, logs.String(), fakeKey)
	assert.NotContains(t, logs.String(), "steal")
	assert.Len(t, ev.Named(realtimeauth.EventUpstreamError), 1)
	assert.Zero(t, other.requests())
}

// TestOpenAIMinterUserClientRedirects: a client of the user's that follows
// redirects follows them only within the endpoint's origin (under its own
// CheckRedirect); one to another host, another port or from https to http
// is refused before it is made, and hc itself is left as it was.
func TestOpenAIMinterUserClientRedirects(t *testing.T) {
	t.Run("other origins refused", func(t *testing.T) {
		plain := newElsewhere(t, false)
		// The TLS upstream redirects to another port of its own host over
		// http (a downgrade), to the same host over https on another port,
		// and to "localhost" on its own port.
		for _, loc := range []func(up *httptest.Server) string{
			func(*httptest.Server) string { return plain.srv.URL + "/v1/realtime/client_secrets" },
			func(up *httptest.Server) string { return strings.Replace(up.URL, "https://", "http://", 1) + "/x" },
			func(up *httptest.Server) string {
				return strings.Replace(up.URL, "127.0.0.1", "localhost", 1) + "/v1/realtime/client_secrets"
			},
		} {
			var target string
			up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, target, http.StatusPermanentRedirect)
			}))
			t.Cleanup(up.Close)
			target = loc(up)
			hc := up.Client()
			require.Nil(t, hc.CheckRedirect)
			m, err := realtimeauth.NewOpenAIMinter(fakeKey, realtimeauth.OpenAIConfig{BaseURL: up.URL + "/v1", HTTPClient: hc})
			require.NoError(t, err)
			_, err = m.Mint(context.Background(), realtimeauth.MintRequest{SessionID: "s", TTL: time.Minute})
			var ue *realtimeauth.UpstreamError
			require.ErrorAs(t, err, &ue, target)
			assert.Equal(t, http.StatusPermanentRedirect, ue.StatusCode, target)
			assert.Contains(t, ue.Message, "refused", target)
			assert.Equal(t, 1, ue.Attempts)
			assert.Nil(t, hc.CheckRedirect, "the user's client is not modified")
		}
		assert.Zero(t, plain.requests())
	})
	t.Run("same origin followed under the user's policy", func(t *testing.T) {
		var mu sync.Mutex
		var seen []string
		u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen = append(seen, r.URL.Path+" "+r.Header.Get("Authorization"))
			mu.Unlock()
			if r.URL.Path == "/old/realtime/client_secrets" {
				http.Redirect(w, r, "/new/realtime/client_secrets", http.StatusTemporaryRedirect)
				return
			}
			okAnswer("ek_moved", time.Now().Add(time.Minute))(w, r)
		})
		var asked int
		hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { asked++; return nil }}
		m, err := realtimeauth.NewOpenAIMinter(fakeKey, realtimeauth.OpenAIConfig{BaseURL: u.srv.URL + "/old", HTTPClient: hc})
		require.NoError(t, err)
		tok, err := m.Mint(context.Background(), realtimeauth.MintRequest{SessionID: "s", TTL: time.Minute})
		require.NoError(t, err)
		assert.Equal(t, "ek_moved", tok.Value)
		assert.Equal(t, 1, asked, "the user's CheckRedirect decides within the origin")
		mu.Lock()
		assert.Equal(t, []string{
			"/old/realtime/client_secrets Bearer " + fakeKey,
			"/new/realtime/client_secrets Bearer " + fakeKey,
		}, seen)
		mu.Unlock()

		hc.CheckRedirect = func(*http.Request, []*http.Request) error { return errors.New("no thanks") }
		m, err = realtimeauth.NewOpenAIMinter(fakeKey, realtimeauth.OpenAIConfig{BaseURL: u.srv.URL + "/old", HTTPClient: hc, MaxRetries: -1})
		require.NoError(t, err)
		_, err = m.Mint(context.Background(), realtimeauth.MintRequest{SessionID: "s", TTL: time.Minute})
		assert.ErrorContains(t, err, "no thanks")
	})
	t.Run("answer from another origin refused", func(t *testing.T) {
		// A transport of the user's that answers from elsewhere (say, a
		// proxy rewriting the URL): its token is not taken.
		u := newUpstream(t, okAnswer("ek_unused", time.Now().Add(time.Minute)))
		hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			moved := r.Clone(r.Context())
			moved.URL.Host = "203.0.113.9:443"
			rec := httptest.NewRecorder()
			okAnswer("ek_elsewhere", time.Now().Add(time.Minute))(rec, r)
			resp := rec.Result()
			resp.Request = moved
			return resp, nil
		})}
		m, err := realtimeauth.NewOpenAIMinter(fakeKey, realtimeauth.OpenAIConfig{BaseURL: u.srv.URL, HTTPClient: hc})
		require.NoError(t, err)
		_, err = m.Mint(context.Background(), realtimeauth.MintRequest{SessionID: "s", TTL: time.Minute})
		var ue *realtimeauth.UpstreamError
		require.ErrorAs(t, err, &ue)
		assert.Equal(t, "answer from another origin", ue.Message)
	})
}

// count is how many requests u has had.
func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

package tokenclient_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/realtimeauth/realtimeauth/tokenclient"
)

// front is a server that redirects every request to where(r), or serves
// it with serve when where returns "", and records the headers it got.
type front struct {
	srv   *httptest.Server
	mu    sync.Mutex
	hdrs  []http.Header
	where func(r *http.Request) string
	serve http.Handler
}

func newFront(t *testing.T, status int, serve http.Handler, where func(r *http.Request) string) *front {
	t.Helper()
	f := &front{where: where, serve: serve}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.hdrs = append(f.hdrs, r.Header.Clone())
		f.mu.Unlock()
		if loc := f.where(r); loc != "" {
			http.Redirect(w, r, loc, status)
			return
		}
		f.serve.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *front) requests() []http.Header {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]http.Header(nil), f.hdrs...)
}

// TestRedirectRefusedByDefault: the default client follows no redirect,
// to another host or to its own; the redirect is a final *Error whose Err
// is ErrRedirect and names the target host; the headers and the request go
// nowhere else, and no token is taken.
func TestRedirectRefusedByDefault(t *testing.T) {
	h := newHarness(t)
	for _, status := range []int{301, 302, 303, 307, 308} {
		for _, toSelf := range []bool{false, true} {
			var f *front
			f = newFront(t, status, http.NotFoundHandler(), func(r *http.Request) string {
				if toSelf {
					return f.srv.URL + "/elsewhere" + r.URL.Path
				}
				return h.base + strings.TrimPrefix(r.URL.Path, basePath)
			})
			c, err := tokenclient.New(f.srv.URL+basePath,
				tokenclient.WithHeader("Authorization", "Bearer user-secret"), tokenclient.WithHeader("X-App-Key", "app-secret"))
			require.NoError(t, err)
			_, err = c.Token(testCtx(t))
			var e *tokenclient.Error
			require.ErrorAs(t, err, &e, "%d", status)
			assert.Equal(t, status, e.Status)
			assert.ErrorIs(t, err, tokenclient.ErrRedirect)
			assert.False(t, e.Retryable(), "a redirect is final")
			target := strings.TrimPrefix(h.base, "http://")
			if toSelf {
				target = strings.TrimPrefix(f.srv.URL, "http://")
			}
			assert.Contains(t, err.Error(), "http://"+strings.SplitN(target, "/", 2)[0])
			assert.NotContains(t, err.Error(), "/elsewhere", "the host only")
			assert.Len(t, f.requests(), 1, "asked once, not retried, not followed")
			require.NoError(t, c.Close())
		}
	}
	assert.Empty(t, h.requests(), "nothing reached the other host")
	assert.Zero(t, h.minter.Calls())
}

// TestRedirectUserClient: a client of the user's that follows redirects
// follows them within the base URL's origin, under its own CheckRedirect,
// and never to another host or port: the headers stay home.
func TestRedirectUserClient(t *testing.T) {
	h := newHarness(t)
	t.Run("another origin refused", func(t *testing.T) {
		f := newFront(t, http.StatusTemporaryRedirect, http.NotFoundHandler(), func(r *http.Request) string {
			return h.base + strings.TrimPrefix(r.URL.Path, basePath)
		})
		hc := &http.Client{}
		c, err := tokenclient.New(f.srv.URL+basePath, tokenclient.WithHTTPClient(hc),
			tokenclient.WithHeader("Authorization", "Bearer user-secret"), tokenclient.WithHeader("X-App-Key", "app-secret"))
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		_, err = c.Token(testCtx(t))
		assert.ErrorIs(t, err, tokenclient.ErrRedirect)
		assert.Empty(t, h.requests(), "the other port of the same host got nothing")
		assert.Nil(t, hc.CheckRedirect, "the user's client is left as it was")
	})
	t.Run("same origin followed", func(t *testing.T) {
		var asked int
		var mu sync.Mutex
		f := newFront(t, http.StatusPermanentRedirect, h.handler, func(r *http.Request) string {
			if p, ok := strings.CutPrefix(r.URL.Path, "/old"); ok {
				return basePath + p
			}
			return ""
		})
		hc := &http.Client{CheckRedirect: func(r *http.Request, _ []*http.Request) error {
			mu.Lock()
			asked++
			mu.Unlock()
			return nil
		}}
		c, err := tokenclient.New(f.srv.URL+"/old", tokenclient.WithHTTPClient(hc), tokenclient.WithHeader("X-App-Key", "app-secret"))
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		tok, err := c.Token(testCtx(t))
		require.NoError(t, err)
		assert.Equal(t, "ek_test_1", tok.Token)
		mu.Lock()
		assert.Equal(t, 1, asked, "the user's CheckRedirect was consulted")
		mu.Unlock()
		got := f.requests()
		require.Len(t, got, 2)
		assert.Equal(t, "app-secret", got[1].Get("X-App-Key"))
	})
	t.Run("token from another origin refused", func(t *testing.T) {
		hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			resp, err := http.DefaultTransport.RoundTrip(r)
			if err == nil {
				moved := r.Clone(r.Context())
				moved.URL.Host = "203.0.113.9:443"
				resp.Request = moved
			}
			return resp, err
		})}
		c, err := tokenclient.New(h.base, tokenclient.WithHTTPClient(hc), tokenclient.WithBackoff(1, 1, 1))
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		_, err = c.Token(testCtx(t))
		var e *tokenclient.Error
		require.ErrorAs(t, err, &e)
		assert.ErrorContains(t, err, "another origin")
		assert.False(t, errors.Is(err, tokenclient.ErrRedirect))
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

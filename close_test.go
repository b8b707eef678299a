package realtimeauth_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/realtimeauthtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCloseAndShutdownWithRequestsInFlight closes the handler and shuts the
// server down, each several times at once, while mints are held in flight:
// the held requests all finish with a token, later ones are refused, and
// nothing panics, blocks or leaks.
func TestCloseAndShutdownWithRequestsInFlight(t *testing.T) {
	checkGoroutines(t)
	const inFlight = 20
	minter := &realtimeauthtest.Minter{}
	minter.Hold()
	h, err := realtimeauth.New(minter, realtimeauth.WithLimits(realtimeauth.Limits{Sessions: realtimeauth.Rate{N: 1000, Per: time.Minute}}), realtimeauth.WithLogger(silentLogger()))
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	defer srv.Close()
	url := srv.URL + "/api/voice-agent/token"

	type result struct {
		status int
		code   string
		token  string
	}
	post := func() result {
		resp, err := http.Post(url, "application/json", strings.NewReader("{}"))
		if err != nil {
			return result{code: err.Error()}
		}
		defer resp.Body.Close()
		var body struct {
			Code  string `json:"code"`
			Token string `json:"token"`
		}
		raw, _ := io.ReadAll(resp.Body)
		_ = json.Unmarshal(raw, &body)
		return result{resp.StatusCode, body.Code, body.Token}
	}

	results := make(chan result, inFlight)
	for range inFlight {
		go func() { results <- post() }()
	}
	require.Eventually(t, func() bool { return minter.Calls() == inFlight }, 5*time.Second, 5*time.Millisecond,
		"every request reaches the held minter")

	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() { assert.NoError(t, h.Close()) })
	}
	wg.Wait()
	late := post()
	assert.Equal(t, http.StatusServiceUnavailable, late.status, "a request after Close")
	assert.Equal(t, "unavailable", late.code)

	shutdownErrs := make(chan error, 3)
	for range 3 {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			shutdownErrs <- srv.Config.Shutdown(ctx)
		}()
	}
	// Shutdown waits for the held requests; let them go once it has begun
	// (its listener refuses connections).
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err == nil {
			_ = c.Close()
		}
		return err != nil
	}, 5*time.Second, 5*time.Millisecond)
	minter.Release()
	for range 3 {
		assert.NoError(t, <-shutdownErrs)
	}
	tokens := map[string]bool{}
	for range inFlight {
		r := <-results
		assert.Equal(t, http.StatusOK, r.status, r.code)
		assert.NotEmpty(t, r.token)
		tokens[r.token] = true
	}
	assert.Len(t, tokens, inFlight, "each held request got its own token")
	assert.Equal(t, inFlight, minter.Calls(), "the refused request never reached the minter")
	assert.NoError(t, h.Close(), "Close after shutdown")
	assert.Equal(t, "healthy", h.Stats().Status, "Stats still answers after Close")
}

// TestCloseRefusesEveryIssuingEndpoint checks Close on each endpoint and
// that health keeps answering, with 503.
func TestCloseRefusesEveryIssuingEndpoint(t *testing.T) {
	minter := &realtimeauthtest.Minter{}
	h, err := realtimeauth.New(minter, realtimeauth.WithLogger(silentLogger()))
	require.NoError(t, err)
	require.NoError(t, h.Close())
	require.NoError(t, h.Close())
	for _, tc := range []struct{ path, body string }{
		{"/api/voice-agent/token", ""},
		{"/api/voice-agent/refresh-token", `{"sessionId":"6f1c1f0e-3c1e-4f37-9a3e-2b8d6f0d4a11"}`},
	} {
		r := httptest.NewRequest(http.MethodPost, tc.path, strings.NewReader(tc.body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		assert.Equal(t, http.StatusServiceUnavailable, w.Code, tc.path)
		assert.Contains(t, w.Body.String(), `"code":"unavailable"`)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/api/voice-agent/health", nil))
	assert.Equal(t, http.StatusServiceUnavailable, w.Code, "draining: load balancers stop sending")
	assert.Contains(t, w.Body.String(), `"draining":true`)
	assert.Zero(t, minter.Calls())
}

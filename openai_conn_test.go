package realtimeauth_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestOpenAIMinterReusesConnections counts the TCP connections an upstream
// accepts while the minter, on its default transport, mints in sequence and
// then 50 at a time: after warm-up, no mint opens a connection.
func TestOpenAIMinterReusesConnections(t *testing.T) {
	checkGoroutines(t)
	var accepted atomic.Int64
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"value":"ek_reuse","expires_at":`+itoa64(time.Now().Add(time.Hour).Unix())+`}`)
	}))
	up.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			accepted.Add(1)
		}
	}
	up.Start()
	defer up.Close()

	m, err := realtimeauth.NewOpenAIMinter("sk-reuse", realtimeauth.OpenAIConfig{BaseURL: up.URL})
	require.NoError(t, err)
	mint := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := m.Mint(ctx, realtimeauth.MintRequest{TTL: time.Minute})
		assert.NoError(t, err)
	}

	for range 200 {
		mint()
	}
	sequential := accepted.Load()
	t.Logf("200 sequential mints: %d connections", sequential)
	assert.Equal(t, int64(1), sequential, "sequential mints share one connection")

	const concurrency, rounds = 50, 6
	before := accepted.Load()
	var wg sync.WaitGroup
	perRound := make([]int64, rounds)
	for round := range rounds {
		start := make(chan struct{})
		for range concurrency {
			wg.Go(func() {
				<-start
				mint()
			})
		}
		close(start)
		wg.Wait()
		perRound[round] = accepted.Load() - before
		before = accepted.Load()
	}
	t.Logf("%d rounds of %d concurrent mints: new connections per round %v", rounds, concurrency, perRound)
	// 50 mints at once need up to 50 connections; how many the first
	// round opens depends on how many overlap, and a later round may open
	// the rest of them. Past that, the idle pool (64 per host) keeps them
	// all, so the total stays at the concurrency: 300 mints on about 50
	// connections. (A connection a moment late back to the pool can make
	// a later round dial one more, hence the allowance of 2.)
	total := accepted.Load() - sequential
	assert.LessOrEqual(t, total, int64(concurrency+2), "connections for %d concurrent mints", concurrency*rounds)
}

// TestUpstreamTransportDefaults pins the default transport's bounds: the
// idle pool per host covers the concurrency a token server sees, and every
// phase of a call is bounded.
func TestUpstreamTransportDefaults(t *testing.T) {
	tr := realtimeauth.NewUpstreamTransport()
	assert.GreaterOrEqual(t, tr.MaxIdleConnsPerHost, 64, "idle pool per host")
	assert.GreaterOrEqual(t, tr.MaxIdleConns, tr.MaxIdleConnsPerHost)
	assert.Zero(t, tr.MaxConnsPerHost, "no cap on live connections: the upstream timeout bounds the wait instead")
	assert.False(t, tr.DisableKeepAlives)
	assert.Positive(t, tr.IdleConnTimeout)
	assert.Positive(t, tr.TLSHandshakeTimeout)
	assert.LessOrEqual(t, tr.TLSHandshakeTimeout, 10*time.Second)
	assert.Positive(t, tr.ResponseHeaderTimeout)
	assert.True(t, tr.ForceAttemptHTTP2)
	assert.NotNil(t, tr.DialContext)
	assert.NotNil(t, tr.Proxy)
}

// TestWrapTransport: WrapTransport is given the minter's own tuned
// transport, once, and every upstream call goes through what it returns.
func TestWrapTransport(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"value":"ek_test","expires_at":%d}`, time.Now().Add(time.Minute).Unix())
	}))
	defer upstream.Close()
	var wrapped int
	var calls atomic.Int32
	m, err := realtimeauth.NewOpenAIMinter(fakeKey, realtimeauth.OpenAIConfig{
		BaseURL: upstream.URL + "/v1",
		WrapTransport: func(rt http.RoundTripper) http.RoundTripper {
			wrapped++
			tr, ok := rt.(*http.Transport)
			require.True(t, ok, "the minter's own transport")
			assert.Equal(t, realtimeauth.NewUpstreamTransport().ResponseHeaderTimeout, tr.ResponseHeaderTimeout)
			return roundTripper(func(r *http.Request) (*http.Response, error) {
				calls.Add(1)
				return rt.RoundTrip(r)
			})
		},
	})
	require.NoError(t, err)
	for range 3 {
		_, err := m.Mint(context.Background(), realtimeauth.MintRequest{SessionID: "s", TTL: time.Minute})
		require.NoError(t, err)
	}
	assert.Equal(t, 1, wrapped, "wrapped once")
	assert.EqualValues(t, 3, calls.Load(), "every call through the wrapper")
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

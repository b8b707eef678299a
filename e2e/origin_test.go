package e2e

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDemoPageRefusedOrigin: opened from an origin the server does not
// allow, the demo page says so (and which address to open) instead of
// staying at "loading the client…", and the server logs the refusal.
func TestDemoPageRefusedOrigin(t *testing.T) {
	t.Parallel()
	ctx := newBrowser(t)
	srv := startExampleServer(t) // allows http://127.0.0.1:PORT only
	_, port, err := net.SplitHostPort(strings.TrimPrefix(srv.url, "http://"))
	require.NoError(t, err)
	refused := "http://localhost:" + port

	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(refused+"/")))
	waitFor(t, ctx, `document.getElementById("status").dataset.state === "refused"`, 10*time.Second)
	status := eval[string](t, ctx, `document.getElementById("status").textContent`)
	assert.Contains(t, status, refused)
	assert.Contains(t, status, "not allowed")
	note := eval[string](t, ctx, `document.getElementById("note").textContent`)
	assert.Contains(t, note, "ALLOWED_ORIGINS")
	assert.Contains(t, note, "Open "+srv.url+"/", "it names the address to open")
	assert.True(t, eval[bool](t, ctx, `document.getElementById("connect").disabled`))
	require.Eventually(t, func() bool { return strings.Contains(srv.logText(), "origin=http://localhost:"+port) },
		5*time.Second, 20*time.Millisecond, "the server log says it too:\n%s", srv.logText())
}

// TestDemoPageDefaultOrigins: with ALLOWED_ORIGINS unset, the page works
// from both loopback spellings of the printed address.
func TestDemoPageDefaultOrigins(t *testing.T) {
	t.Parallel()
	ctx := newBrowser(t)
	srv := startExampleServer(t, "ALLOWED_ORIGINS=") // the last value wins: unset
	_, port, err := net.SplitHostPort(strings.TrimPrefix(srv.url, "http://"))
	require.NoError(t, err)
	for _, base := range []string{"http://127.0.0.1:" + port, "http://localhost:" + port} {
		assert.Contains(t, srv.logText(), base+"/", "printed")
		require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(base+"/")))
		waitFor(t, ctx, `document.getElementById("status").dataset.state === "disconnected"`, 10*time.Second)
		require.NoError(t, chromedp.Do(ctx, chromedp.Click("#connect")))
		waitFor(t, ctx, `document.getElementById("status").dataset.state === "token"`, 5*time.Second)
	}
}

// TestDemoPageRefusedRefresh: when the server answers but refuses every
// new token (here the mint limit is spent), the page says the server
// refused, with the code, not that it could not be reached.
func TestDemoPageRefusedRefresh(t *testing.T) {
	t.Parallel()
	ctx := newBrowser(t)
	srv := startExampleServer(t, "VOICE_AGENT_TOKEN_DURATION=10", "VOICE_AGENT_REFRESH_MIN_INTERVAL=0s",
		"VOICE_AGENT_MINT_LIMIT=1")
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.url+"/")))
	waitFor(t, ctx, `document.getElementById("status").dataset.state === "disconnected"`, 10*time.Second)
	require.NoError(t, chromedp.Do(ctx, chromedp.Click("#connect")))
	waitFor(t, ctx, `document.getElementById("status").dataset.state === "token"`, 5*time.Second)
	waitFor(t, ctx, `document.getElementById("status").dataset.state === "expired"`, 15*time.Second)
	status := eval[string](t, ctx, `document.getElementById("status").textContent`)
	assert.Contains(t, status, "refused")
	assert.Contains(t, status, "rate_limited, 429")
	assert.NotContains(t, status, "could not be reached")
}

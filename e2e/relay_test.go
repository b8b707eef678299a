package e2e

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/realtimeauth/realtimeauth/realtimeauthtest"
	"github.com/realtimeauth/realtimeauth/sideband/sidebandtest"
)

// TestDemoPageRelay runs the demo page's default way with a "real" key:
// the page calls through the example server's relay against a fake OpenAI
// (calls, hang-up, sideband), with Chromium's fake microphone. The
// upstream gets the page's offer with the server's session, the page shows
// the upstream's call ID and never holds a key, and Disconnect hangs the
// call up.
func TestDemoPageRelay(t *testing.T) {
	t.Parallel() // the browser tests mostly wait: run them side by side
	up := &realtimeauthtest.Upstream{Key: fakeOpenAIKey}
	sb := &sidebandtest.Handler{Upstream: up}
	up.Sideband = sb
	upSrv := httptest.NewServer(up)
	t.Cleanup(upSrv.Close)
	ctx := newBrowser(t,
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
	)
	srv := startExampleServer(t, "OPENAI_API_KEY="+fakeOpenAIKey, "OPENAI_BASE_URL="+upSrv.URL+"/v1")

	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.url+"/")))
	waitFor(t, ctx, `document.getElementById("status").dataset.state === "disconnected"`, 10*time.Second)
	require.NoError(t, chromedp.Do(ctx, chromedp.Click("#connect")))
	waitFor(t, ctx, `["connected", "error"].includes(document.getElementById("status").dataset.state)`, 10*time.Second)
	status := eval[string](t, ctx, `document.getElementById("status").textContent`)
	require.Equal(t, "connected through the relay: speak", status)

	calls := up.Calls()
	require.Len(t, calls, 1)
	c := calls[0]
	assert.Equal(t, c.ID, eval[string](t, ctx, `document.getElementById("call").textContent`), "the page shows the upstream's call ID")
	assert.Contains(t, c.Offer, "m=audio ", "the microphone track")
	assert.Contains(t, c.Offer, "m=application ", "the oai-events data channel")
	assert.JSONEq(t, `{"type":"realtime","model":"gpt-realtime"}`, string(c.Session), "the server's session")
	assert.Equal(t, "Bearer "+fakeOpenAIKey, c.Header.Get("Authorization"))
	assert.Equal(t, "—", eval[string](t, ctx, `document.getElementById("token").textContent`), "no token was asked for")
	assert.NotContains(t, eval[string](t, ctx, `document.documentElement.outerHTML`), "ek_")
	waitFor(t, ctx, "true", time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for sb.Connects() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond) // the server's sideband dial, bounded
	}
	assert.Equal(t, 1, sb.Connects(), "the server watches the call over its sideband")

	require.NoError(t, chromedp.Do(ctx, chromedp.Click("#disconnect")))
	waitFor(t, ctx, `[...document.querySelectorAll("#events li")].some((li) => li.textContent.includes("hung up"))`, 10*time.Second)
	assert.Equal(t, []string{c.ID}, up.Hangups(), "Disconnect hangs the call up, once")
	assert.False(t, up.Live(c.ID))
	log := srv.logText()
	assert.NotContains(t, log, fakeOpenAIKey)
	assert.True(t, strings.Contains(log, "call_started") || !strings.Contains(log, "level=INFO"), "call events are logged when info is")
}

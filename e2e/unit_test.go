package e2e

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/realtimeauth/realtimeauth"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type unitResult struct {
	Name  string `json:"name"`
	OK    bool   `json:"ok"`
	Error string `json:"error"`
}

// TestClientUnit runs the browser client's unit tests (testdata/unit.js)
// in chromium, against the module the handler embeds and serves, and
// reports each as a subtest. They use a fake clock and a fake fetch.
func TestClientUnit(t *testing.T) {
	ctx := newBrowser(t)
	srv := httptest.NewUnstartedServer(nil)
	origin := "http://" + srv.Listener.Addr().String()
	// Chromium sends Origin even for a same-origin module script.
	h, err := realtimeauth.New(&realtimeauth.DevMinter{}, realtimeauth.WithAllowedOrigins(origin))
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("/api/voice-agent/", h)
	mux.Handle("/", http.FileServer(http.Dir("testdata")))
	srv.Config.Handler = mux
	srv.Start()
	t.Cleanup(srv.Close)

	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(origin+"/unit.html")))
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("out")?.textContent ?? ""`))
			t.Log("page says: " + out)
		}
	})
	waitFor(t, ctx, "window.unitResults", 20*time.Second)
	results := eval[[]unitResult](t, ctx, "window.unitResults")
	require.GreaterOrEqual(t, len(results), 20, "the page ran every test")
	for _, r := range results {
		t.Run(r.Name, func(t *testing.T) {
			assert.True(t, r.OK, r.Error)
		})
	}
}

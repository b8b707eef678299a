package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/realtimeauth/realtimeauth"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// startTestdataServer serves the handler (dev mode) and testdata/ on
// loopback, and returns its origin.
func startTestdataServer(t *testing.T) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	origin := "http://" + srv.Listener.Addr().String()
	// Chromium sends Origin even for a same-origin module script.
	h, err := realtimeauth.New(realtimeauth.NewDevMinter(nil), realtimeauth.WithAllowedOrigins(origin))
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("/api/voice-agent/", h)
	mux.Handle("/", http.FileServer(http.Dir("testdata")))
	mux.HandleFunc("GET /sri.html", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = fmt.Fprintf(w, `<!doctype html><script type="importmap">{"integrity":{"/api/voice-agent/client.js":%q}}</script>`,
			r.URL.Query().Get("integrity"))
	})
	srv.Config.Handler = mux
	srv.Start()
	t.Cleanup(srv.Close)
	return origin
}

// TestClientScriptSRI checks in Chromium that an import map pinning the
// module to realtimeauth.ClientScriptIntegrity() admits it, and that a
// wrong hash is refused: the hash the README shows protects users.
func TestClientScriptSRI(t *testing.T) {
	t.Parallel() // the browser tests mostly wait: run them side by side
	ctx := newBrowser(t)
	origin := startTestdataServer(t)
	const load = `import("/api/voice-agent/client.js").then((m) => typeof m.getTokenManager, (e) => "refused: " + e)`
	for _, tc := range []struct {
		name, integrity, want string
	}{
		{"right hash", realtimeauth.ClientScriptIntegrity(), "function"},
		{"wrong hash", "sha384-" + strings.Repeat("A", 64), "refused: TypeError"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(origin+"/sri.html?integrity="+url.QueryEscape(tc.integrity))))
			assert.True(t, strings.HasPrefix(eval[string](t, ctx, load), tc.want))
		})
	}
}

type unitResult struct {
	Name  string `json:"name"`
	OK    bool   `json:"ok"`
	Error string `json:"error"`
}

// TestClientUnit runs the browser client's unit tests (testdata/unit.js)
// in chromium, against the module the handler embeds and serves, and
// reports each as a subtest. They use a fake clock and a fake fetch.
func TestClientUnit(t *testing.T) {
	t.Parallel() // the browser tests mostly wait: run them side by side
	ctx := newBrowser(t)
	origin := startTestdataServer(t)
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

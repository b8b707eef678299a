package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/realtimeauthtest"
)

// agentsDir holds the npm package of the Agents SDK test (package.json and
// package-lock.json; node_modules is installed by npm ci, in .ci/run or by
// the test itself).
const agentsDir = "testdata/agents"

// bundleAgentsSDK installs @openai/agents-realtime and esbuild from
// testdata/agents' lock file when they are missing, bundles the SDK for the
// browser and returns the bundle. Without npm the test skips (fails under
// CI=true).
func bundleAgentsSDK(t *testing.T) []byte {
	t.Helper()
	need := func(name string) string {
		p, err := exec.LookPath(name)
		if err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s not found; CI needs node and npm", name)
			}
			t.Skipf("%s not found: install node and npm (apt-get install nodejs npm)", name)
		}
		return p
	}
	run := func(timeout time.Duration, name string, args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = agentsDir
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s %s:\n%s", name, strings.Join(args, " "), out)
	}
	if _, err := os.Stat(filepath.Join(agentsDir, "node_modules", "@openai", "agents-realtime")); err != nil {
		run(5*time.Minute, need("npm"), "ci", "--no-audit", "--no-fund")
	}
	need("node")
	out := filepath.Join(t.TempDir(), "agents.js")
	run(time.Minute, filepath.Join("node_modules", ".bin", "esbuild"), "entry.js", "--bundle", "--format=esm",
		"--platform=browser", "--log-level=warning", "--outfile="+out)
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	return b
}

// relayed is one request the relay received.
type relayed struct {
	method, auth, contentType, sdkHeader, preflightHeaders, body string
}

// relayServer serves a handler (the OpenAI minter against up) on loopback,
// recording the requests to its calls endpoint.
func relayServer(t *testing.T, up *httptest.Server, opts ...realtimeauth.Option) (string, func() []relayed) {
	t.Helper()
	m, err := realtimeauth.NewOpenAIMinter(fakeOpenAIKey, realtimeauth.OpenAIConfig{
		BaseURL: up.URL + "/v1",
		Session: json.RawMessage(`{"instructions":"the server's instructions"}`),
	})
	require.NoError(t, err)
	h, err := realtimeauth.New(m, append([]realtimeauth.Option{realtimeauth.WithLogger(slog.New(slog.DiscardHandler))}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Close() })
	var mu sync.Mutex
	var seen []relayed
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/voice-agent/calls") {
			b, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(strings.NewReader(string(b)))
			mu.Lock()
			seen = append(seen, relayed{r.Method, r.Header.Get("Authorization"), r.Header.Get("Content-Type"),
				r.Header.Get("X-OpenAI-Agents-SDK"), r.Header.Get("Access-Control-Request-Headers"), string(b)})
			mu.Unlock()
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() []relayed {
		mu.Lock()
		defer mu.Unlock()
		return append([]relayed(nil), seen...)
	}
}

// TestAgentsSDKRelay runs the OpenAI Agents SDK's browser transport
// (@openai/agents-realtime, bundled with esbuild) in Chromium against the
// relay, cross-origin, with a fake upstream: the relay receives the offer,
// the upstream the multipart form with the server's session, and the
// transport's callId is the upstream's. It tries the forms of
// session.connect that put no OpenAI key in the page:
//
//   - useInsecureApiKey with any placeholder, or with the app's own user
//     credential for WithAuthenticator (the SDK sends it as Authorization:
//     Bearer);
//   - an "ek_" placeholder without useInsecureApiKey;
//
// and the one that fails: a non-"ek_" string without useInsecureApiKey,
// which the SDK refuses in a browser before sending anything.
func TestAgentsSDKRelay(t *testing.T) {
	t.Parallel() // the browser tests mostly wait: run them side by side
	bundle := bundleAgentsSDK(t)

	// The page's origin: "localhost", so that the relay on 127.0.0.1 is
	// another origin and the preflight runs.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	pageOrigin := "http://localhost:" + fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
	page := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/agents.js":
			w.Header().Set("Content-Type", "text/javascript")
			_, _ = w.Write(bundle)
		default:
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_, _ = io.WriteString(w, `<!doctype html><title>agents</title><script type="module">
import * as agents from "/agents.js"; window.agents = agents; window.ready = true;
</script>`)
		}
	})}}
	page.Start()
	t.Cleanup(page.Close)

	up := &realtimeauthtest.Upstream{Key: fakeOpenAIKey}
	upSrv := httptest.NewServer(up)
	t.Cleanup(upSrv.Close)
	anon, anonSeen := relayServer(t, upSrv, realtimeauth.WithAllowedOrigins(pageOrigin), realtimeauth.WithLimits(realtimeauth.Limits{MaxCallsPerClient: 10}))
	authed, authedSeen := relayServer(t, upSrv, realtimeauth.WithAllowedOrigins(pageOrigin),
		realtimeauth.WithAuthenticator(func(r *http.Request) (string, error) {
			if r.Header.Get("Authorization") == "Bearer app-session-of-alice" {
				return "alice", nil
			}
			return "", errors.New("unknown user")
		}))

	ctx := newBrowser(t,
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
	)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(pageOrigin+"/")))
	waitFor(t, ctx, `window.ready === true`, 20*time.Second)

	// connect starts session.connect and waits for the transport's call ID
	// (the SDK sets it from Location before it applies the answer; connect
	// itself never resolves here, since no media can flow from the fake).
	connect := func(name, baseURL, transportOpts, apiKey string) (callID, failure string) {
		t.Helper()
		eval[bool](t, ctx, fmt.Sprintf(`(() => {
			const { OpenAIRealtimeWebRTC, RealtimeAgent, RealtimeSession } = window.agents;
			const transport = new OpenAIRealtimeWebRTC({ baseUrl: %q, ...%s });
			const session = new RealtimeSession(new RealtimeAgent({ name: "relay", instructions: "the page's instructions" }), { transport });
			const r = window[%q] = { transport, session };
			session.connect({ apiKey: %s }).catch((e) => { r.error = String((e && e.message) || e); });
			return true;
		})()`, baseURL+"/api/voice-agent/calls", transportOpts, name, apiKey))
		waitFor(t, ctx, fmt.Sprintf(`window[%q].transport.callId || window[%q].error`, name, name), 20*time.Second)
		type res struct {
			CallID string `json:"callId"`
			Error  string `json:"error"`
		}
		r := eval[res](t, ctx, fmt.Sprintf(`({ callId: window[%q].transport.callId || "", error: window[%q].error || "" })`, name, name))
		eval[bool](t, ctx, fmt.Sprintf(`(window[%q].session.close(), true)`, name))
		return r.CallID, r.Error
	}

	t.Run("useInsecureApiKey with a placeholder", func(t *testing.T) {
		id, failure := connect("insecure", anon, `{ useInsecureApiKey: true }`, `"relay"`)
		require.Empty(t, failure)
		calls := up.Calls()
		require.NotEmpty(t, calls)
		last := calls[len(calls)-1]
		assert.Equal(t, last.ID, id, "the transport's callId is the upstream's")
		assert.JSONEq(t, `{"type":"realtime","model":"gpt-realtime","instructions":"the server's instructions"}`, string(last.Session),
			"the upstream gets the server's session, not the page's")
		assert.Equal(t, "Bearer "+fakeOpenAIKey, last.Header.Get("Authorization"))
		assert.Contains(t, last.Offer, "m=audio ")
		assert.Contains(t, last.Offer, "m=application ", "the SDK's oai-events data channel")

		seen := anonSeen()
		require.Len(t, seen, 2, "a preflight, then the offer: %+v", seen)
		assert.Equal(t, http.MethodOptions, seen[0].method)
		assert.Equal(t, "authorization,content-type,x-openai-agents-sdk", seen[0].preflightHeaders)
		post := seen[1]
		assert.Equal(t, http.MethodPost, post.method)
		assert.Equal(t, "application/sdp", post.contentType)
		assert.Equal(t, "Bearer relay", post.auth)
		assert.NotEmpty(t, post.sdkHeader)
		assert.Equal(t, last.Offer, post.body, "the relay passes the offer on as it came")
	})

	t.Run("an ek_ placeholder", func(t *testing.T) {
		id, failure := connect("ek", anon, `{}`, `"ek_relay"`)
		require.Empty(t, failure)
		calls := up.Calls()
		assert.Equal(t, calls[len(calls)-1].ID, id)
	})

	t.Run("the app's credential for WithAuthenticator", func(t *testing.T) {
		id, failure := connect("credential", authed, `{ useInsecureApiKey: true }`, `async () => "app-session-of-alice"`)
		require.Empty(t, failure)
		calls := up.Calls()
		assert.Equal(t, calls[len(calls)-1].ID, id)
		seen := authedSeen()
		assert.Equal(t, "Bearer app-session-of-alice", seen[len(seen)-1].auth)

		n := len(up.Calls())
		_, failure = connect("stranger", authed, `{ useInsecureApiKey: true }`, `"app-session-of-mallory"`)
		assert.Contains(t, failure, "401", "an unknown user gets no call")
		assert.Len(t, up.Calls(), n)
	})

	t.Run("a non-ek_ key without useInsecureApiKey", func(t *testing.T) {
		before := len(anonSeen())
		_, failure := connect("refused", anon, `{}`, `"relay"`)
		assert.Contains(t, failure, "ephemeral client key")
		assert.Len(t, anonSeen(), before, "the SDK sent nothing")
	})
}

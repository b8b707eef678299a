package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeOpenAIKey is what the example server is given; the fake upstream
// accepts only it. It is no real key.
const fakeOpenAIKey = "sk-e2e-not-a-real-key"

// offer is the WebRTC offer the page sent to OpenAI's calls endpoint.
type offer struct {
	method, url, auth, contentType, sdp string
}

// TestDemoPageWebRTC runs the demo's ephemeral-key way (?via=token) with a
// "real" key against a fake OpenAI
// token endpoint, with Chromium's fake microphone, and intercepts the
// page's request to https://api.openai.com/v1/realtime/calls (there is no
// OpenAI in a test): the page must POST its SDP offer there with the
// ephemeral key, then report OpenAI's refusal.
func TestDemoPageWebRTC(t *testing.T) {
	t.Parallel() // the browser tests mostly wait: run them side by side
	var mints atomic.Int32
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/realtime/client_secrets" || r.Header.Get("Authorization") != "Bearer "+fakeOpenAIKey {
			http.Error(w, `{"error":{"message":"unexpected request"}}`, http.StatusBadRequest)
			return
		}
		n := mints.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"value":"ek_e2e%030d","expires_at":%d}`, n, time.Now().Add(60*time.Second).Unix())
	}))
	t.Cleanup(upstream.Close)

	ctx := newBrowser(t,
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
	)
	offers := interceptOpenAI(t, ctx)
	srv := startExampleServer(t, "OPENAI_API_KEY="+fakeOpenAIKey, "OPENAI_BASE_URL="+upstream.URL)

	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.url+"/?via=token"))) // the ephemeral-key way
	waitFor(t, ctx, `document.getElementById("status").dataset.state === "disconnected"`, 10*time.Second)
	require.NoError(t, chromedp.Do(ctx, chromedp.Click("#connect")))
	waitFor(t, ctx, `document.getElementById("status").dataset.state === "error"`, 10*time.Second)

	tok := eval[tokenData](t, ctx, currentToken)
	require.True(t, strings.HasPrefix(tok.Token, "ek_e2e"), tok.Token)
	assert.Equal(t, int32(1), mints.Load())
	select {
	case o := <-offers:
		assert.Equal(t, http.MethodPost, o.method)
		assert.Equal(t, "https://api.openai.com/v1/realtime/calls", o.url)
		assert.Equal(t, "Bearer "+tok.Token, o.auth)
		assert.Equal(t, "application/sdp", o.contentType)
		assert.True(t, strings.HasPrefix(o.sdp, "v=0\r\n"), o.sdp)
		assert.Contains(t, o.sdp, "m=audio ", "the microphone track")
		assert.Contains(t, o.sdp, "m=application ", "the oai-events data channel")
	default:
		t.Fatal("the page sent no offer to OpenAI")
	}
	status := eval[string](t, ctx, `document.getElementById("status").textContent`)
	assert.Equal(t, "WebRTC failed: OpenAI answered 401", status)
	assert.True(t, eval[bool](t, ctx, `document.getElementById("note").hidden`), "no dev-mode note with a real key")
	assert.NotContains(t, srv.logText(), fakeOpenAIKey, "the server never logs its key")
	assert.NotContains(t, srv.logText(), tok.Token, "nor a full token")
}

// interceptOpenAI answers the page's requests to api.openai.com: the CORS
// preflight as OpenAI would, the offer with a 401, which it sends on.
func interceptOpenAI(t *testing.T, ctx context.Context) <-chan offer {
	t.Helper()
	offers := make(chan offer, 4)
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	require.NoError(t, chromedp.Listen(ctx, func(ev any) {
		e, ok := ev.(*fetch.EventRequestPaused)
		if !ok {
			return
		}
		wg.Go(func() {
			origin, _ := e.Request.Headers["Origin"].(string)
			cors := []*fetch.HeaderEntry{
				{Name: "Access-Control-Allow-Origin", Value: origin},
				{Name: "Access-Control-Allow-Methods", Value: "POST"},
				{Name: "Access-Control-Allow-Headers", Value: "authorization, content-type"},
			}
			p := fetch.FulfillRequestParams{RequestID: e.RequestID, ResponseCode: http.StatusNoContent, ResponseHeaders: cors}
			if e.Request.Method == http.MethodPost {
				var sdp strings.Builder
				for _, d := range e.Request.PostDataEntries {
					sdp.Write(d.Bytes)
				}
				header := func(k string) string { v, _ := e.Request.Headers[k].(string); return v }
				offers <- offer{e.Request.Method, e.Request.URL, header("Authorization"), header("Content-Type"), sdp.String()}
				body, _ := json.Marshal(map[string]any{"error": map[string]string{"message": "fake OpenAI refuses"}})
				p.ResponseCode = http.StatusUnauthorized
				p.ResponseHeaders = append(cors, &fetch.HeaderEntry{Name: "Content-Type", Value: "application/json"})
				p.Body = body
			}
			_, _ = chromedp.Run(ctx, func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
				_, err := cdp.Call(ctx, tg, fetch.FulfillRequest, p)
				return chromedp.Void{}, err
			})
		})
	}))
	_, err := chromedp.Run(ctx, func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, tg, fetch.Enable, fetch.EnableParams{
			Patterns: []*fetch.RequestPattern{{URLPattern: "https://api.openai.com/*"}},
		})
		return chromedp.Void{}, err
	})
	require.NoError(t, err)
	return offers
}

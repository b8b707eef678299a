package sideband_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/calls"
	"github.com/realtimeauth/realtimeauth/realtimeauthtest"
	"github.com/realtimeauth/realtimeauth/sideband"
)

// TestAttackSidebandRedirectCarriesTheKey: the Watcher dials through
// http.DefaultClient (unless told otherwise), which follows redirects, and
// coder/websocket follows them too; Go keeps the Authorization header on a
// redirect to the same host name on another port (or from https to http),
// and any other header, such as Azure's api-key, everywhere. An upstream
// (or anything that can answer for its host) redirecting the sideband's
// handshake receives the API key at the target. Issue 10 closed this for
// the minter and tokenclient; the sideband's handshakes should follow no
// redirect either (a redirect is a failed dial, logged without the key).
func TestAttackSidebandRedirectCarriesTheKey(t *testing.T) {
	var mu sync.Mutex
	var stolen []string
	thief := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		stolen = append(stolen, r.Header.Get("Authorization")+r.Header.Get("api-key"))
		mu.Unlock()
		w.WriteHeader(http.StatusTeapot)
	}))
	t.Cleanup(thief.Close)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, thief.URL+"/steal", http.StatusFound)
	}))
	t.Cleanup(up.Close)
	m, err := realtimeauth.NewOpenAIMinter(key, realtimeauth.OpenAIConfig{BaseURL: up.URL + "/v1"})
	require.NoError(t, err)
	clock := realtimeauthtest.NewTimerClock(realtimeauthtest.NewClock(time.Unix(1_800_000_000, 0)))
	logs := &realtimeauthtest.Buffer{}
	w, err := sideband.New(sideband.WithTimer(clock.AfterFunc), sideband.WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	require.NoError(t, err)
	t.Cleanup(func() { _ = w.Close() })

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w.Watch(ctx, m.(calls.Upstream).Sideband("rtc_attack"), func() {})
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	require.NoError(t, clock.WaitPending(wctx, 1), "the failed dial schedules a redial")
	mu.Lock()
	defer mu.Unlock()
	for _, s := range stolen {
		assert.NotContains(t, s, key, "the API key reached the redirect's target")
	}
	assert.NotContains(t, logs.String(), key)
}

// TestAttackSidebandLogsTheUpstreamsWords: a failed handshake's error is
// logged whole as the redial's cause. coder/websocket's errors quote the
// upstream's Connection, Upgrade and Sec-WebSocket-Accept headers, so an
// upstream that echoes the key in one of them has it written to the log
// (the minter redacts every such echo; the sideband module does not).
func TestAttackSidebandLogsTheUpstreamsWords(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", "websocket-"+k)
		w.WriteHeader(http.StatusSwitchingProtocols)
	}))
	t.Cleanup(up.Close)
	m, err := realtimeauth.NewOpenAIMinter(key, realtimeauth.OpenAIConfig{BaseURL: up.URL + "/v1"})
	require.NoError(t, err)
	clock := realtimeauthtest.NewTimerClock(realtimeauthtest.NewClock(time.Unix(1_800_000_000, 0)))
	var logs bytes.Buffer
	var lmu sync.Mutex
	w, err := sideband.New(sideband.WithTimer(clock.AfterFunc), sideband.WithLogger(slog.New(slog.NewTextHandler(lockedWriter{&lmu, &logs}, nil))))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w.Watch(ctx, m.(calls.Upstream).Sideband("rtc_attack"), func() {})
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	require.NoError(t, clock.WaitPending(wctx, 1))
	require.NoError(t, w.Close())
	lmu.Lock()
	defer lmu.Unlock()
	require.Contains(t, logs.String(), "redialling")
	assert.NotContains(t, logs.String(), key, "the key in the sideband's log")
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// TestWatcherRefusesRedirectsOfAGivenClient: a client given with
// WithHTTPClient, whose own CheckRedirect would follow anything, follows no
// redirect either (Azure's api-key would go with it); the redial's log line
// names the status.
func TestWatcherRefusesRedirectsOfAGivenClient(t *testing.T) {
	var mu sync.Mutex
	reached := 0
	thief := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		reached++
		mu.Unlock()
		w.WriteHeader(http.StatusTeapot)
	}))
	t.Cleanup(thief.Close)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, thief.URL+"/steal", http.StatusFound)
	}))
	t.Cleanup(up.Close)
	m, err := realtimeauth.NewOpenAIMinter(key, realtimeauth.OpenAIConfig{
		AzureResource: "res",
		Model:         "dep",
		BaseURL:       up.URL + "/openai/v1",
	})
	require.NoError(t, err)
	clock := realtimeauthtest.NewTimerClock(realtimeauthtest.NewClock(time.Unix(1_800_000_000, 0)))
	logs := &realtimeauthtest.Buffer{}
	follow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return nil }}
	w, err := sideband.New(sideband.WithHTTPClient(follow), sideband.WithTimer(clock.AfterFunc),
		sideband.WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w.Watch(ctx, m.(calls.Upstream).Sideband("rtc_attack"), func() { t.Error("a refused redirect is no end of the call") })
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	require.NoError(t, clock.WaitPending(wctx, 1))
	require.NoError(t, w.Close())
	mu.Lock()
	defer mu.Unlock()
	assert.Zero(t, reached, "the redirect was followed")
	assert.Contains(t, logs.String(), "status=302")
	assert.NotContains(t, logs.String(), key)
	assert.NotNil(t, follow.CheckRedirect, "the given client is left as it was")
}

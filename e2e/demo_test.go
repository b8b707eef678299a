package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// exampleServer is the example server (go run ./examples/server), built
// and run as its own process: the very program a newcomer runs, stopped
// with the signal a terminal sends.
type exampleServer struct {
	url    string
	cmd    *exec.Cmd
	exited chan error
	mu     sync.Mutex
	log    bytes.Buffer
}

var server struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// TestMain removes the example server built for the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if server.dir != "" {
		_ = os.RemoveAll(server.dir)
	}
	os.Exit(code)
}

// buildExampleServer builds ./examples/server once for every test, with
// -race when the tests have it (which reuses their compiled packages and
// checks the server for races too).
func buildExampleServer(t *testing.T) string {
	t.Helper()
	server.once.Do(func() {
		if server.dir, server.err = os.MkdirTemp("", "realtimeauth-e2e-"); server.err != nil {
			return
		}
		server.bin = filepath.Join(server.dir, "server")
		args := []string{"build", "-o", server.bin}
		if raceEnabled {
			args = append(args, "-race")
		}
		build := exec.Command("go", append(args, "./examples/server")...)
		build.Dir = ".." // the repository root, where go.work is
		if out, err := build.CombinedOutput(); err != nil {
			server.err = fmt.Errorf("go build ./examples/server: %v\n%s", err, out)
		}
	})
	require.NoError(t, server.err)
	return server.bin
}

// startExampleServer starts the example server on a free loopback port
// with env added to a minimal environment: never the caller's
// OPENAI_API_KEY, so it runs in dev mode unless env gives it a key.
func startExampleServer(t *testing.T, env ...string) *exampleServer {
	t.Helper()
	bin := buildExampleServer(t)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	s := &exampleServer{url: "http://" + addr, exited: make(chan error, 1)}
	s.cmd = exec.Command(bin)
	s.cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"ADDR=" + addr,
		"ALLOWED_ORIGINS=" + s.url,
	}, env...)
	stderr, err := s.cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, s.cmd.Start())
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			s.mu.Lock()
			s.log.WriteString(sc.Text() + "\n")
			s.mu.Unlock()
		}
	}()
	go func() {
		<-copied
		s.exited <- s.cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		<-copied
		if t.Failed() {
			t.Log("example server log:\n" + s.logText())
		}
	})

	deadline := time.Now().Add(15 * time.Second)
	for {
		res, err := http.Get(s.url + "/api/voice-agent/health")
		if err == nil {
			_ = res.Body.Close()
			break
		}
		require.True(t, time.Now().Before(deadline), "the example server did not come up: %v\n%s", err, s.logText())
		time.Sleep(50 * time.Millisecond)
	}
	return s
}

func (s *exampleServer) logText() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// stop sends SIGTERM and waits for a clean exit.
func (s *exampleServer) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-s.exited:
		require.NoError(t, err, "the example server's exit")
	case <-time.After(10 * time.Second):
		t.Fatal("the example server did not stop within 10 s of SIGTERM")
	}
}

// screenshotPath is where TestDemoPage writes its screenshot:
// $REALTIMEAUTH_SCREENSHOT, or realtimeauth-demo.png in the temp directory.
func screenshotPath() string {
	if p := os.Getenv("REALTIMEAUTH_SCREENSHOT"); p != "" {
		return p
	}
	return filepath.Join(os.TempDir(), "realtimeauth-demo.png")
}

type tokenData struct {
	Token     string  `json:"token"`
	ExpiresAt float64 `json:"expiresAt"`
	ExpiresIn int     `json:"expiresIn"`
	SessionID string  `json:"sessionId"`
}

// The page's manager is the module's singleton: a dynamic import of the
// same URL reaches it.
const currentToken = `import("/api/voice-agent/client.js").then((m) => m.getTokenManager().getToken())`

// TestDemoPage drives the example server's demo page in dev mode with a
// 10 s token: load, Connect, a refresh before expiry, no token in
// storage, then the server stops and the token expires. About 20 s.
func TestDemoPage(t *testing.T) {
	t.Parallel() // the browser tests mostly wait: run them side by side
	ctx := newBrowser(t)
	srv := startExampleServer(t,
		"VOICE_AGENT_TOKEN_DURATION=10",
		"VOICE_AGENT_REFRESH_MIN_INTERVAL=0s",
		"LOG_FORMAT=json",
	)

	// The page loads the module the handler embeds, checked against its
	// integrity hash by the page's import map.
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.url+"/")))
	waitFor(t, ctx, `document.getElementById("status").dataset.state === "disconnected"`, 10*time.Second)
	loaded := eval[[]string](t, ctx, `performance.getEntriesByType("resource").map((e) => new URL(e.name).pathname)`)
	assert.Contains(t, loaded, "/api/voice-agent/client.js")
	served, err := http.Get(srv.url + "/api/voice-agent/client.js")
	require.NoError(t, err)
	body, err := io.ReadAll(served.Body)
	_ = served.Body.Close()
	require.NoError(t, err)
	embedded, err := os.ReadFile("../js/realtimeauth.js")
	require.NoError(t, err)
	assert.Equal(t, embedded, body, "the server serves js/realtimeauth.js")

	// Connect obtains a dev token; the page says why it stops there.
	require.NoError(t, chromedp.Do(ctx, chromedp.Click("#connect")))
	waitFor(t, ctx, `document.getElementById("status").dataset.state === "token"`, 5*time.Second)
	first := eval[tokenData](t, ctx, currentToken)
	assert.True(t, strings.HasPrefix(first.Token, "ek_dev_"), first.Token)
	assert.InDelta(t, 10, first.ExpiresIn, 1, "a 10 s token, rounded down")
	note := eval[string](t, ctx, `document.getElementById("note").textContent`)
	assert.Contains(t, note, "Dev mode")
	assert.Contains(t, note, "OPENAI_API_KEY")

	// The refresh comes before the first token expires (at about half its life).
	waitFor(t, ctx, `document.getElementById("refreshes").textContent === "1"`, 9*time.Second)
	second := eval[tokenData](t, ctx, currentToken)
	now := eval[float64](t, ctx, `Date.now()`)
	assert.Less(t, now, first.ExpiresAt, "refreshed before the first token expired")
	assert.NotEqual(t, first.Token, second.Token)
	assert.Equal(t, first.SessionID, second.SessionID, "a refresh keeps the session")
	assert.Equal(t, "token obtained (dev mode)", eval[string](t, ctx, `document.getElementById("status").textContent`))

	// Memory only: no storage holds the token, and the page shows only its prefix.
	storage := eval[string](t, ctx, `JSON.stringify([localStorage.length, sessionStorage.length, document.cookie,
		Object.values(localStorage).join(), Object.values(sessionStorage).join()])`)
	assert.Equal(t, `[0,0,"","",""]`, storage)
	assert.NotContains(t, eval[string](t, ctx, `document.documentElement.outerHTML`), second.Token)

	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	path := screenshotPath()
	require.NoError(t, os.WriteFile(path, shot, 0o644))
	t.Logf("screenshot of the demo page: %s", path)

	// Stop the server: refreshes fail, the token stays until it expires,
	// then tokenExpired.
	eval[bool](t, ctx, `import("/api/voice-agent/client.js").then((m) => {
		m.getTokenManager().on("tokenExpired", () => { window.expiredAt = Date.now(); });
		return true;
	})`)
	srv.stop(t)
	last := eval[tokenData](t, ctx, currentToken)
	wait := time.Duration(last.ExpiresAt-eval[float64](t, ctx, `Date.now()`))*time.Millisecond + 3*time.Second
	waitFor(t, ctx, `window.expiredAt`, wait)
	expiredAt := eval[float64](t, ctx, `window.expiredAt`)
	assert.GreaterOrEqual(t, expiredAt, last.ExpiresAt-50, "tokenExpired not before the token's expiry")
	assert.Less(t, expiredAt, last.ExpiresAt+2000, "tokenExpired on time")
	assert.Equal(t, "expired", eval[string](t, ctx, `document.getElementById("status").dataset.state`))
	assert.Contains(t, eval[string](t, ctx, `document.getElementById("status").textContent`), "could not be reached",
		"the server is gone: no answer, no refusal")
	events := eval[[]string](t, ctx, `[...document.querySelectorAll("#events li")].map((li) => li.dataset.event + ": " + li.textContent)`)
	joined := strings.Join(events, "\n")
	assert.Contains(t, joined, "tokenError: ", "failed refreshes were reported")
	assert.Contains(t, joined, "network_error")
	assert.Contains(t, joined, "tokenExpired: ")
	assert.Nil(t, eval[*tokenData](t, ctx, currentToken), "no token after expiry")

	// The server never logged a full token.
	log := srv.logText()
	for _, tok := range []string{first.Token, second.Token, last.Token} {
		assert.NotContains(t, log, tok)
	}
	assert.Contains(t, log, "DEV MODE")
	var line map[string]any
	require.NoError(t, json.Unmarshal([]byte(strings.SplitN(log, "\n", 2)[0]), &line), "LOG_FORMAT=json")
}

package tokenclient_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/realtimeauthtest"
	"github.com/realtimeauth/realtimeauth/tokenclient"
)

// basePath is where the handler serves by default (realtimeauth.WithBasePath).
const basePath = "/api/voice-agent"

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// half makes every jitter and backoff draw 0.5, so waits are exact.
func half() float64 { return 0.5 }

// harness is a real realtimeauth handler on loopback with a fake minter,
// the server's fake clock and fake timers for the clients.
type harness struct {
	t      *testing.T
	clock  *realtimeauthtest.Clock // the server's clock
	timers *realtimeauthtest.TimerClock
	minter *realtimeauthtest.Minter
	srv    *httptest.Server
	base   string

	mu      sync.Mutex
	handler http.Handler
	paths   []string
}

func newHarness(t *testing.T, opts ...realtimeauth.Option) *harness {
	t.Helper()
	h := &harness{t: t, clock: realtimeauthtest.NewClock(t0)}
	h.timers = realtimeauthtest.NewTimerClock(h.clock)
	h.minter = &realtimeauthtest.Minter{Now: h.clock.Now}
	h.handler = h.newHandler(opts...)
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.paths = append(h.paths, strings.TrimPrefix(r.URL.Path, basePath))
		hd := h.handler
		h.mu.Unlock()
		hd.ServeHTTP(w, r)
	}))
	t.Cleanup(h.srv.Close)
	h.base = h.srv.URL + basePath
	return h
}

// newHandler returns a real handler on the harness's clock and minter.
func (h *harness) newHandler(opts ...realtimeauth.Option) *realtimeauth.Handler {
	h.t.Helper()
	all := append([]realtimeauth.Option{
		realtimeauth.WithClock(h.clock.Now),
		realtimeauth.WithLogger(slog.New(slog.DiscardHandler)),
	}, opts...)
	hd, err := realtimeauth.New(h.minter, all...)
	require.NoError(h.t, err)
	h.t.Cleanup(func() { _ = hd.Close() })
	return hd
}

// serve replaces the handler behind the server.
func (h *harness) serve(hd http.Handler) {
	h.mu.Lock()
	h.handler = hd
	h.mu.Unlock()
}

// requests returns the endpoints requested so far ("/token", …).
func (h *harness) requests() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.paths...)
}

// skewed is the client's view of the harness clock, off by skew.
type skewed struct {
	*realtimeauthtest.TimerClock
	skew time.Duration
}

func (s skewed) Now() time.Time { return s.TimerClock.Now().Add(s.skew) }

// client returns a client of the harness server on its fake timers, with
// the recorder's events and draws of 0.5; opts come last and win.
func (h *harness) client(rec *recorder, skew time.Duration, opts ...tokenclient.Option) *tokenclient.Client {
	h.t.Helper()
	all := append([]tokenclient.Option{
		tokenclient.WithClock(skewed{h.timers, skew}),
		tokenclient.WithRand(half),
	}, opts...)
	if rec != nil {
		all = append(all, tokenclient.WithEvents(rec.events()))
	}
	c, err := tokenclient.New(h.base, all...)
	require.NoError(h.t, err)
	h.t.Cleanup(func() { _ = c.Close() })
	return c
}

// waitRequested waits until the code under test has asked for n timers in
// all, so that the next Advance finds them.
func (h *harness) waitRequested(n int) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := h.timers.WaitFor(ctx, func([]time.Duration) bool { return len(h.timers.Requested()) >= n })
	require.NoError(h.t, err, "waiting for timer %d; requested so far: %v", n, h.timers.Requested())
}

// next advances the clock to the soonest pending timer and returns the
// wait it covered.
func (h *harness) next() time.Duration {
	h.t.Helper()
	p := h.timers.Pending()
	require.NotEmpty(h.t, p, "no timer pending")
	h.timers.Advance(p[0])
	return p[0]
}

// recorder collects a client's events.
type recorder struct {
	refreshed chan tokenclient.TokenData
	expired   chan tokenclient.TokenData
	errs      chan *tokenclient.Error
}

func newRecorder() *recorder {
	return &recorder{
		refreshed: make(chan tokenclient.TokenData, 1000),
		expired:   make(chan tokenclient.TokenData, 1000),
		errs:      make(chan *tokenclient.Error, 1000),
	}
}

func (r *recorder) events() tokenclient.Events {
	return tokenclient.Events{
		Refreshed: func(d tokenclient.TokenData) { r.refreshed <- d },
		Expired:   func(d tokenclient.TokenData) { r.expired <- d },
		Error:     func(e *tokenclient.Error) { r.errs <- e },
	}
}

// recv waits for the next value on ch; the timeout only guards against a
// hang, it measures nothing.
func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		var zero T
		require.FailNow(t, fmt.Sprintf("no %T arrived", zero))
		return zero
	}
}

// drain returns what ch holds now, without waiting.
func drain[T any](ch <-chan T) []T {
	var out []T
	for {
		select {
		case v := <-ch:
			out = append(out, v)
		default:
			return out
		}
	}
}

// tokenAsync calls c.Token on another goroutine.
func tokenAsync(c *tokenclient.Client, ctx context.Context) <-chan result {
	ch := make(chan result, 1)
	go func() {
		tok, err := c.Token(ctx)
		ch <- result{tok, err}
	}()
	return ch
}

type result struct {
	tok tokenclient.TokenData
	err error
}

// leftovers returns the stacks of goroutines running tokenclient code or
// holding a client-side HTTP connection.
func leftovers() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "realtimeauth/tokenclient.") || strings.Contains(g, "net/http.(*persistConn)") {
			out = append(out, g)
		}
	}
	return out
}

// requireNoLeftovers waits (bounded) for goroutines that are ending to
// end, then fails if any tokenclient goroutine remains.
func requireNoLeftovers(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(leftovers()) > 0 && time.Now().Before(deadline) {
		runtime.Gosched()
		time.Sleep(5 * time.Millisecond)
	}
	require.Empty(t, leftovers(), "goroutines left after Close")
}

// testCtx bounds a wait that a broken client could make endless; it
// measures nothing.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var _ tokenclient.Clock = (*realtimeauthtest.TimerClock)(nil)

// validSessionID reports whether id is a session ID as the server issues
// them: a UUID in canonical lower-case form.
func validSessionID(id string) bool {
	u, err := uuid.Parse(id)
	return err == nil && u.String() == id
}

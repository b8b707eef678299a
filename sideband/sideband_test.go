package sideband_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/calls"
	"github.com/realtimeauth/realtimeauth/realtimeauthtest"
	"github.com/realtimeauth/realtimeauth/sideband"
	"github.com/realtimeauth/realtimeauth/sideband/sidebandtest"
)

const key = "sk-sideband-test-key"

// callMinter is what NewOpenAIMinter returns: a Minter that places calls.
type callMinter interface {
	realtimeauth.Minter
	calls.Upstream
}

type fixture struct {
	up     *realtimeauthtest.Upstream
	sb     *sidebandtest.Handler
	srv    *httptest.Server
	minter callMinter
	clock  *realtimeauthtest.TimerClock
	w      *sideband.Watcher
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{up: &realtimeauthtest.Upstream{Key: key}}
	f.sb = &sidebandtest.Handler{Upstream: f.up}
	f.up.Sideband = f.sb
	f.srv = httptest.NewServer(f.up)
	t.Cleanup(f.srv.Close)
	m, err := realtimeauth.NewOpenAIMinter(key, realtimeauth.OpenAIConfig{BaseURL: f.srv.URL + "/v1"})
	require.NoError(t, err)
	f.minter = m.(callMinter)
	f.clock = realtimeauthtest.NewTimerClock(realtimeauthtest.NewClock(time.Unix(1_800_000_000, 0)))
	f.w, err = sideband.New(sideband.WithTimer(f.clock.AfterFunc), sideband.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.w.Close() })
	return f
}

func (f *fixture) call(t *testing.T) string {
	t.Helper()
	ans, err := f.minter.Call(context.Background(), calls.Request{SessionID: "s", Offer: "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"})
	require.NoError(t, err)
	return ans.ID
}

// watch starts a watch and returns a channel closed when ended is called;
// a second call of ended fails the test.
func (f *fixture) watch(t *testing.T, ctx context.Context, id string) <-chan struct{} {
	done := make(chan struct{})
	f.w.Watch(ctx, f.minter.Sideband(id), func() {
		select {
		case <-done:
			t.Error("ended called twice")
		default:
			close(done)
		}
	})
	return done
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal(what)
	}
}

func waitUntil(t *testing.T, cond func() bool, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond) // polling a counter another goroutine moves, bounded by ctx
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatal(what)
		}
	}
}

func TestEndedByUpstream(t *testing.T) {
	f := newFixture(t)
	id := f.call(t)
	done := f.watch(t, context.Background(), id)
	waitUntil(t, func() bool { return f.sb.Connects() == 1 }, "no sideband connection")
	select {
	case <-done:
		t.Fatal("ended before the call ended")
	default:
	}
	f.up.End(id) // the user closed the tab
	waitClosed(t, done, "ended not called after a normal close")
}

func TestEndedByHangup(t *testing.T) {
	f := newFixture(t)
	id := f.call(t)
	done := f.watch(t, context.Background(), id)
	waitUntil(t, func() bool { return f.sb.Connects() == 1 }, "no sideband connection")
	require.NoError(t, f.minter.Hangup(context.Background(), id))
	waitClosed(t, done, "ended not called after the hang-up")
}

func TestUnknownCallHasEnded(t *testing.T) {
	f := newFixture(t)
	done := f.watch(t, context.Background(), "rtc_unknown")
	waitClosed(t, done, "a 404 at the first dial is an ended call")
	assert.Equal(t, 0, f.sb.Connects())
}

// TestDropRedials: a drop is no end; the watch redials after the backoff,
// and a redial refused with 404 means the call ended meanwhile.
func TestDropRedials(t *testing.T) {
	f := newFixture(t)
	id := f.call(t)
	f.sb.Drop.Store(1)
	done := f.watch(t, context.Background(), id)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, f.clock.WaitPending(ctx, 1), "a redial is scheduled")
	p := f.clock.Pending()
	assert.InDelta(t, float64(sideband.DefaultBackoff), float64(p[0]), float64(sideband.DefaultBackoff)/4+1)
	f.clock.Advance(sideband.DefaultBackoff)
	waitUntil(t, func() bool { return f.sb.Connects() == 2 }, "no redial")

	f.up.End(id) // the redialled sideband closes normally

	waitClosed(t, done, "ended not called")
	// A call that ends while its sideband is down.
	id2 := f.call(t)
	f.sb.Drop.Store(1)
	done2 := f.watch(t, context.Background(), id2)
	require.NoError(t, f.clock.WaitPending(ctx, 1))
	f.up.End(id2)
	f.clock.Advance(sideband.DefaultBackoff)
	waitClosed(t, done2, "a 404 on redial is an ended call")
}

// TestUnreachableFailsClosed: a sideband that cannot be opened is retried
// with a growing backoff, up to its maximum, and never reported ended;
// cancelling the watch stops it without calling ended.
func TestUnreachableFailsClosed(t *testing.T) {
	f := newFixture(t)
	id := f.call(t)
	f.up.Fail = func(r *http.Request) int {
		if r.Method == http.MethodGet {
			return http.StatusServiceUnavailable
		}
		return 0
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := f.watch(t, ctx, id)
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	for range 6 {
		require.NoError(t, f.clock.WaitPending(wctx, 1))
		f.clock.Advance(f.clock.Pending()[0]) // just that wait: the next one is longer
	}
	require.NoError(t, f.clock.WaitPending(wctx, 1))
	req := f.clock.Requested()
	require.Len(t, req, 7)
	for i, want := range []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second, 5 * time.Second} {
		assert.InDelta(t, float64(want), float64(req[i]), float64(want)/4+1, "wait %d", i)
	}
	cancel()
	require.NoError(t, f.clock.WaitFor(wctx, func(p []time.Duration) bool { return len(p) == 0 }), "the pending redial is stopped")
	require.NoError(t, f.w.Close())
	select {
	case <-done:
		t.Fatal("an unreachable sideband must not end the call")
	default:
	}
}

func TestCloseStopsWatches(t *testing.T) {
	f := newFixture(t)
	id := f.call(t)
	done := f.watch(t, context.Background(), id)
	waitUntil(t, func() bool { return f.sb.Connects() == 1 }, "no sideband connection")
	require.NoError(t, f.w.Close())
	require.NoError(t, f.w.Close(), "idempotent")
	select {
	case <-done:
		t.Fatal("Close is no end of the call")
	default:
	}
	f.w.Watch(context.Background(), f.minter.Sideband(id), func() { t.Error("a closed watcher watches nothing") })
	assert.True(t, f.up.Live(id))
}

func TestOptions(t *testing.T) {
	for _, o := range []sideband.Option{
		nil,
		sideband.WithBackoff(0, time.Second),
		sideband.WithBackoff(2*time.Second, time.Second),
		sideband.WithBackoff(time.Second, 2*time.Minute),
		sideband.WithDialTimeout(time.Millisecond),
	} {
		_, err := sideband.New(o)
		assert.Error(t, err)
	}
	w, err := sideband.New(sideband.WithHTTPClient(http.DefaultClient), sideband.WithDialTimeout(time.Second), sideband.WithBackoff(time.Millisecond, time.Millisecond))
	require.NoError(t, err)
	require.NoError(t, w.Close())
}

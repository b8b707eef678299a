// Package sideband tells realtimeauth when a relayed WebRTC call has ended
// upstream, over the call's sideband WebSocket (OpenAI's
// wss://api.openai.com/v1/realtime?call_id=…), so that a call the user
// ends by closing the tab stops counting against its caps within seconds:
//
//	watcher, err := sideband.New()
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer watcher.Close()
//	h, err := realtimeauth.New(minter, realtimeauth.WithCallWatcher(watcher))
//
// It lives in a module of its own so that the core keeps its four
// dependencies; its WebSocket client is github.com/coder/websocket.
//
// A watch reads the sideband and discards what it reads (the server keeps
// control of the call through the relay and the hang-up endpoint). The
// sideband closing normally, or a redial refused with 404 (the upstream no
// longer knows the call), means the call has ended. A connection that
// cannot be opened, or that drops any other way, is redialled with
// backoff, for as long as the watch lasts: the call keeps counting until
// the sideband says otherwise (it fails closed).
package sideband

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/realtimeauth/realtimeauth/internal/redact"
	"github.com/realtimeauth/realtimeauth/internal/redirect"

	"github.com/coder/websocket"

	"github.com/realtimeauth/realtimeauth/calls"
)

// Watcher is a calls.Watcher over the calls' sideband WebSockets. It is
// safe for concurrent use.
type Watcher struct {
	client           *http.Client
	initial, maxWait time.Duration
	dialTimeout      time.Duration
	after            func(d time.Duration, f func()) (stop func() bool)
	log              *slog.Logger

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
	stop   context.CancelFunc
	ctx    context.Context
}

var _ calls.Watcher = (*Watcher)(nil)

// Option configures a Watcher.
type Option func(*Watcher)

// Defaults of a Watcher.
const (
	// DefaultBackoff and DefaultMaxBackoff bound the wait before a redial:
	// it doubles from the first to the second, less up to a quarter of
	// random jitter. The maximum keeps a call that ended while its
	// sideband was down in the registry for at most about that long.
	DefaultBackoff    = 500 * time.Millisecond
	DefaultMaxBackoff = 5 * time.Second
	// DefaultDialTimeout bounds one dial (connection and handshake).
	DefaultDialTimeout = 10 * time.Second
)

// WithHTTPClient sets the HTTP client the handshakes go through. Default:
// a client with http.DefaultTransport. Either way a handshake follows no
// redirect (the Watcher uses a copy of c whose CheckRedirect refuses them):
// Go sends the Authorization header on to another port of the same host
// and Azure's api-key header anywhere, and OpenAI's sideband does not
// redirect. A redirect is a failed dial, logged with its status, and
// redialled like any other.
func WithHTTPClient(c *http.Client) Option { return func(w *Watcher) { w.client = c } }

// WithBackoff sets the wait before a redial: initial, doubling up to
// maxWait. Defaults 500ms and 5s; initial must be in 1ms..maxWait, maxWait
// at most 1m.
func WithBackoff(initial, maxWait time.Duration) Option {
	return func(w *Watcher) { w.initial, w.maxWait = initial, maxWait }
}

// WithDialTimeout bounds one dial. Default 10s; valid 100ms..1m.
func WithDialTimeout(d time.Duration) Option { return func(w *Watcher) { w.dialTimeout = d } }

// WithTimer sets how the Watcher waits before a redial, for tests
// (realtimeauthtest.TimerClock's AfterFunc). Default: time.AfterFunc.
func WithTimer(after func(d time.Duration, f func()) (stop func() bool)) Option {
	return func(w *Watcher) { w.after = after }
}

// WithLogger sets where failed dials and drops are logged: the handshake's
// status and the error, cut short, with every secret of the sideband's
// headers (the API key) redacted from it as the minter redacts its key
// (raw, JSON-, backslash- or URL-escaped, or any mix); never the headers.
// Default slog.Default().
func WithLogger(l *slog.Logger) Option { return func(w *Watcher) { w.log = l } }

// New returns a Watcher.
func New(opts ...Option) (*Watcher, error) {
	w := &Watcher{}
	for _, o := range opts {
		if o == nil {
			return nil, errors.New("sideband: nil Option")
		}
		o(w)
	}
	if w.client == nil {
		w.client = &http.Client{}
	}
	cp := *w.client
	cp.CheckRedirect = redirect.Refuse
	w.client = &cp
	if w.initial == 0 && w.maxWait == 0 {
		w.initial, w.maxWait = DefaultBackoff, DefaultMaxBackoff
	}
	if w.initial < time.Millisecond || w.initial > w.maxWait || w.maxWait > time.Minute {
		return nil, errors.New("sideband: WithBackoff: initial must be in 1ms..maxWait, maxWait at most 1m")
	}
	if w.dialTimeout == 0 {
		w.dialTimeout = DefaultDialTimeout
	}
	if w.dialTimeout < 100*time.Millisecond || w.dialTimeout > time.Minute {
		return nil, errors.New("sideband: WithDialTimeout: outside 100ms..1m")
	}
	if w.after == nil {
		w.after = func(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }
	}
	if w.log == nil {
		w.log = slog.Default()
	}
	w.ctx, w.stop = context.WithCancel(context.Background())
	return w, nil
}

// Watch implements calls.Watcher. It returns at once; the watch runs
// until the call ends (then ended is called, once), ctx ends, or the
// Watcher is closed.
func (w *Watcher) Watch(ctx context.Context, s calls.Sideband, ended func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stop := context.AfterFunc(w.ctx, cancel)
		defer stop()
		if w.watch(ctx, s) {
			ended()
		}
	}()
}

// Close stops every watch and waits for them to return; none calls ended
// afterwards. It is idempotent.
func (w *Watcher) Close() error {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.stop()
	w.wg.Wait()
	return nil
}

// watch reports whether the call ended (false: ctx ended first).
func (w *Watcher) watch(ctx context.Context, s calls.Sideband) bool {
	for fails := 0; ; {
		gone, status, err := w.session(ctx, s)
		switch {
		case ctx.Err() != nil:
			return false
		case gone:
			return true
		case err == nil:
			fails = 0 // connected, then dropped: start the backoff over
		}
		fails++
		d := w.backoff(fails)
		w.log.LogAttrs(ctx, slog.LevelWarn, "realtimeauth/sideband: redialling",
			slog.String("call_id", s.CallID), slog.Int("attempt", fails), slog.Duration("wait", d),
			slog.Int("status", status), slog.String("cause", causeText(err, s.Header)))
		if !w.sleep(ctx, d) {
			return false
		}
	}
}

// session dials once and reads until the connection ends. It reports
// whether the call has ended, and the failed dial's status (0 without an
// answer) and error (nil once connected).
func (w *Watcher) session(ctx context.Context, s calls.Sideband) (gone bool, status int, dialErr error) {
	dctx, cancel := context.WithTimeout(ctx, w.dialTimeout)
	conn, resp, err := websocket.Dial(dctx, s.URL, &websocket.DialOptions{HTTPClient: w.client, HTTPHeader: s.Header})
	cancel()
	if err != nil {
		if resp != nil {
			status = resp.StatusCode
		}
		if status == http.StatusNotFound {
			return true, 0, nil
		}
		return false, status, err
	}
	defer conn.CloseNow()
	conn.SetReadLimit(-1) // every message is discarded as it is read
	for {
		_, r, err := conn.Reader(ctx)
		if err == nil {
			_, err = io.Copy(io.Discard, r)
		}
		if err != nil {
			if websocket.CloseStatus(err) == websocket.StatusNormalClosure {
				return true, 0, nil
			}
			w.log.LogAttrs(ctx, slog.LevelDebug, "realtimeauth/sideband: dropped",
				slog.String("call_id", s.CallID), slog.String("cause", causeText(err, s.Header)))
			return false, 0, nil
		}
	}
}

func (w *Watcher) backoff(n int) time.Duration {
	d := w.initial
	for i := 1; i < n && d < w.maxWait; i++ {
		d *= 2
	}
	d = min(d, w.maxWait)
	return d - time.Duration(rand.Float64()*float64(d)/4)
}

// sleep waits d on the Watcher's timer; false when ctx ended first.
func (w *Watcher) sleep(ctx context.Context, d time.Duration) bool {
	done := make(chan struct{})
	stop := w.after(d, func() { close(done) })
	select {
	case <-done:
		return true
	case <-ctx.Done():
		stop()
		return false
	}
}

// maxCause bounds the error text a log line carries.
const maxCause = 300

// causeText is err's text fit for a log: every secret the headers carry
// redacted from it first (a handshake's error quotes the upstream's
// headers, which may echo the key), then cut to maxCause bytes.
func causeText(err error, h http.Header) string {
	if err == nil {
		return "connection dropped"
	}
	msg := err.Error()
	for _, vs := range h {
		for _, v := range vs {
			// The header's value ("Bearer sk-…", or Azure's bare key),
			// and its credential after the scheme.
			if i := strings.LastIndexByte(v, ' '); i >= 0 {
				msg = redact.String(msg, v[i+1:])
			}
			msg = redact.String(msg, v)
		}
	}
	if len(msg) > maxCause {
		msg = msg[:maxCause] + "…"
	}
	return strings.ToValidUTF8(msg, "?")
}

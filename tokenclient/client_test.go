package tokenclient_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/tokenclient"
)

func TestTokenFetchesOnceAndCaches(t *testing.T) {
	h := newHarness(t)
	rec := newRecorder()
	c := h.client(rec, 0)

	tok, err := c.Token(testCtx(t))
	require.NoError(t, err)
	assert.Equal(t, "ek_test_1", tok.Token)
	assert.True(t, validSessionID(tok.SessionID), tok.SessionID)
	assert.Equal(t, 60*time.Second, tok.ExpiresIn)
	assert.Equal(t, t0.Add(60*time.Second), tok.ExpiresAt)
	assert.Equal(t, t0.Add(60*time.Second).UnixMilli(), tok.ServerExpiresAt.UnixMilli())
	assert.Equal(t, t0.UnixMilli(), tok.ServerTime.UnixMilli())
	assert.Equal(t, tok, recv(t, rec.refreshed), "Refreshed fires for the first token too")

	h.timers.Advance(20 * time.Second) // before the refresh time
	again, err := c.Token(testCtx(t))
	require.NoError(t, err)
	assert.Equal(t, tok, again)
	assert.Equal(t, []string{"/token"}, h.requests())
	assert.Equal(t, 1, h.minter.Calls())
	assert.Empty(t, drain(rec.errs))
}

// 100 callers at once: one upstream mint, one token for all, no error.
func TestTokenSingleFlight(t *testing.T) {
	h := newHarness(t)
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	h.minter.Func = func(ctx context.Context, req realtimeauth.MintRequest) (realtimeauth.Token, error) {
		once.Do(func() { close(entered) })
		<-release
		return realtimeauth.Token{Value: "ek_shared", ExpiresAt: h.clock.Now().Add(req.TTL)}, nil
	}
	// No retries: a caller that did not share the request would fail at
	// once (the handler allows 10 token requests a minute), not wait.
	c := h.client(nil, 0, tokenclient.WithBackoff(time.Second, time.Second, 1))

	const n = 100
	var started, done sync.WaitGroup
	results := make([]result, n)
	started.Add(n)
	done.Add(n)
	for i := range n {
		go func() {
			defer done.Done()
			started.Done()
			tok, err := c.Token(testCtx(t))
			results[i] = result{tok, err}
		}()
	}
	started.Wait()
	<-entered // the one request is at the minter, held
	close(release)
	done.Wait()

	for i, r := range results {
		require.NoError(t, r.err, "caller %d", i)
		assert.Equal(t, "ek_shared", r.tok.Token, "caller %d", i)
	}
	assert.Equal(t, 1, h.minter.Calls())
	assert.Equal(t, []string{"/token"}, h.requests())
}

// A caller giving up does not cancel the request the others wait for.
func TestTokenCallerCancelLeavesSharedRequest(t *testing.T) {
	h := newHarness(t)
	entered, release := make(chan struct{}), make(chan struct{})
	mintErr := make(chan error, 1)
	h.minter.Func = func(ctx context.Context, req realtimeauth.MintRequest) (realtimeauth.Token, error) {
		close(entered)
		<-release
		mintErr <- ctx.Err()
		return realtimeauth.Token{Value: "ek_shared", ExpiresAt: h.clock.Now().Add(req.TTL)}, nil
	}
	c := h.client(nil, 0)

	ctx, cancel := context.WithCancel(context.Background())
	first := tokenAsync(c, ctx)
	<-entered
	second := tokenAsync(c, testCtx(t))
	cancel()
	r := recv(t, first)
	assert.ErrorIs(t, r.err, context.Canceled)

	close(release)
	r = recv(t, second)
	require.NoError(t, r.err)
	assert.Equal(t, "ek_shared", r.tok.Token)
	assert.NoError(t, recv(t, mintErr), "the server saw the request through")
	assert.Equal(t, 1, h.minter.Calls())

	// A context already done still gets a token that is at hand.
	done, cancelDone := context.WithCancel(context.Background())
	cancelDone()
	tok, err := c.Token(done)
	require.NoError(t, err)
	assert.Equal(t, "ek_shared", tok.Token)
}

func TestTokenContextDoneBeforeAnyToken(t *testing.T) {
	h := newHarness(t)
	c := h.client(nil, 0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.Token(ctx)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Empty(t, h.requests(), "no request for a caller that cannot wait")
}

// The refresh happens on the local clock, lead time before the local
// expiry, whatever the offset between client and server clocks.
func TestRefreshOnTimeUnderClockSkew(t *testing.T) {
	for _, skew := range []time.Duration{0, 5 * time.Minute, -5 * time.Minute} {
		t.Run(skew.String(), func(t *testing.T) {
			h := newHarness(t)
			rec := newRecorder()
			c := h.client(rec, skew)
			local := t0.Add(skew)

			first, err := c.Token(testCtx(t))
			require.NoError(t, err)
			assert.Equal(t, local.Add(60*time.Second), first.ExpiresAt, "local expiry")
			assert.Equal(t, t0.Add(60*time.Second).UnixMilli(), first.ServerExpiresAt.UnixMilli())
			recv(t, rec.refreshed)
			// Lead 30s, jitter 5s·0.5: refresh at 32.5s; expiry at 60s.
			assert.Equal(t, []time.Duration{32500 * time.Millisecond, 60 * time.Second}, h.timers.Pending())

			h.timers.Advance(32500*time.Millisecond - time.Millisecond)
			assert.Equal(t, []time.Duration{time.Millisecond, 27501 * time.Millisecond}, h.timers.Pending(), "not refreshed early")
			h.timers.Advance(time.Millisecond)
			second := recv(t, rec.refreshed)

			assert.Equal(t, []string{"/token", "/refresh-token"}, h.requests())
			assert.Equal(t, first.SessionID, second.SessionID)
			assert.Equal(t, "ek_test_2", second.Token)
			assert.Equal(t, local.Add(32500*time.Millisecond+60*time.Second), second.ExpiresAt)
			tok, err := c.Token(testCtx(t))
			require.NoError(t, err)
			assert.Equal(t, second, tok)
			assert.Empty(t, drain(rec.errs))
			assert.Empty(t, drain(rec.expired))
		})
	}
}

// The refresh time for various token lives, lead times and jitters.
func TestRefreshSchedule(t *testing.T) {
	tests := []struct {
		name    string
		ttl     time.Duration
		opts    []tokenclient.Option
		refresh time.Duration // after receipt
	}{
		{"defaults", 60 * time.Second, nil, 32500 * time.Millisecond},
		{"no jitter", 60 * time.Second, []tokenclient.Option{tokenclient.WithJitter(0)}, 30 * time.Second},
		{"lead capped at half the life", 60 * time.Second,
			[]tokenclient.Option{tokenclient.WithLeadTime(50 * time.Second), tokenclient.WithJitter(0)}, 30 * time.Second},
		{"short token", 20 * time.Second, nil, 12500 * time.Millisecond}, // lead 10s, jitter min(5s, 5s)·0.5
		{"jitter capped at half the lead", 2 * time.Minute,
			[]tokenclient.Option{tokenclient.WithLeadTime(20 * time.Second), tokenclient.WithJitter(time.Minute)}, 105 * time.Second},
		{"zero lead", 60 * time.Second, []tokenclient.Option{tokenclient.WithLeadTime(0)}, 60 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, realtimeauth.WithLimits(realtimeauth.Limits{TokenTTL: tt.ttl}))
			c := h.client(nil, 0, tt.opts...)
			_, err := c.Token(testCtx(t))
			require.NoError(t, err)
			assert.Equal(t, []time.Duration{tt.refresh, tt.ttl}, h.timers.Requested())
		})
	}
}

// Without auto-refresh no timer refreshes; Token, once the refresh time
// has come, returns the current token and refreshes in the background.
func TestAutoRefreshOff(t *testing.T) {
	h := newHarness(t)
	rec := newRecorder()
	c := h.client(rec, 0, tokenclient.WithAutoRefresh(false), tokenclient.WithJitter(0))
	first, err := c.Token(testCtx(t))
	require.NoError(t, err)
	recv(t, rec.refreshed)
	assert.Equal(t, []time.Duration{60 * time.Second}, h.timers.Pending(), "only the expiry timer")

	h.timers.Advance(40 * time.Second)
	assert.Equal(t, []string{"/token"}, h.requests())
	tok, err := c.Token(testCtx(t))
	require.NoError(t, err)
	assert.Equal(t, first, tok, "still valid: returned at once")
	second := recv(t, rec.refreshed)
	assert.Equal(t, first.SessionID, second.SessionID)
	tok, err = c.Token(testCtx(t))
	require.NoError(t, err)
	assert.Equal(t, second, tok)
	assert.Equal(t, []string{"/token", "/refresh-token"}, h.requests())
}

// A token within WithMinValidity of its expiry is not handed out: Token
// waits for the new one.
func TestTokenWaitsWhenTokenNearExpiry(t *testing.T) {
	h := newHarness(t)
	c := h.client(nil, 0, tokenclient.WithAutoRefresh(false), tokenclient.WithMinValidity(10*time.Second))
	first, err := c.Token(testCtx(t))
	require.NoError(t, err)
	h.timers.Advance(51 * time.Second)
	tok, err := c.Token(testCtx(t))
	require.NoError(t, err)
	assert.NotEqual(t, first.Token, tok.Token)
	assert.Equal(t, first.SessionID, tok.SessionID)
	assert.Equal(t, t0.Add(51*time.Second+60*time.Second), tok.ExpiresAt)
}

// Retries back off exponentially with full jitter (draws of 0.5 here)
// and give up after the attempts; every attempt is an Error event.
func TestBackoff(t *testing.T) {
	h := newHarness(t)
	h.minter.SetError(errors.New("upstream down"))
	rec := newRecorder()
	c := h.client(rec, 0, tokenclient.WithBackoff(time.Second, 3*time.Second, 5))

	res := tokenAsync(c, testCtx(t))
	var waits []time.Duration
	for i := 1; i <= 4; i++ {
		h.waitRequested(i)
		waits = append(waits, h.next())
	}
	r := recv(t, res)
	// min(cap, base·2^(n-1))·0.5 for n = 1…4, the cap being 3s.
	assert.Equal(t, []time.Duration{500 * time.Millisecond, time.Second, 1500 * time.Millisecond, 1500 * time.Millisecond}, waits)
	assert.Equal(t, waits, h.timers.Requested(), "no other wait")

	var e *tokenclient.Error
	require.ErrorAs(t, r.err, &e)
	assert.Equal(t, http.StatusBadGateway, e.Status)
	assert.Equal(t, string(realtimeauth.CodeUpstreamError), e.Code)
	assert.Equal(t, 5, e.Attempt)
	assert.Equal(t, "/token", e.Endpoint)
	events := drain(rec.errs)
	require.Len(t, events, 5)
	for i, ev := range events {
		assert.Equal(t, i+1, ev.Attempt)
		assert.Equal(t, string(realtimeauth.CodeUpstreamError), ev.Code)
	}
	assert.Equal(t, 5, h.minter.Calls())
	assert.Empty(t, h.timers.Pending(), "no token, nothing scheduled")
}

// Retry-After from the real handler (OpenAI rate limiting us) is honoured
// when it is longer than the backoff.
func TestBackoffHonoursRetryAfter(t *testing.T) {
	h := newHarness(t)
	h.minter.SetError(&realtimeauth.UpstreamError{StatusCode: http.StatusTooManyRequests, RetryAfter: 7 * time.Second})
	rec := newRecorder()
	c := h.client(rec, 0)

	res := tokenAsync(c, testCtx(t))
	e := recv(t, rec.errs)
	assert.Equal(t, http.StatusServiceUnavailable, e.Status)
	assert.Equal(t, string(realtimeauth.CodeUpstreamRateLimited), e.Code)
	assert.Equal(t, 7*time.Second, e.RetryAfter)
	h.waitRequested(1)
	assert.Equal(t, []time.Duration{7 * time.Second}, h.timers.Pending(), "Retry-After, not the 0.5s backoff")

	h.minter.SetError(nil)
	h.timers.Advance(7*time.Second - time.Millisecond)
	assert.Equal(t, 1, h.minter.Calls(), "not before Retry-After")
	h.timers.Advance(time.Millisecond)
	r := recv(t, res)
	require.NoError(t, r.err)
	assert.Equal(t, "ek_test_2", r.tok.Token)
}

// A refresh refused as too soon (429 with Retry-After from the real
// handler) waits as told, then succeeds on the same session.
func TestRefreshTooSoonWaitsRetryAfter(t *testing.T) {
	h := newHarness(t, realtimeauth.WithLimits(realtimeauth.Limits{MaxRefreshes: 10, MinRefreshInterval: 45 * time.Second}))
	rec := newRecorder()
	c := h.client(rec, 0, tokenclient.WithJitter(0))
	first, err := c.Token(testCtx(t))
	require.NoError(t, err)
	recv(t, rec.refreshed)

	h.timers.Advance(30 * time.Second) // refresh due; the server wants 45s
	e := recv(t, rec.errs)
	assert.Equal(t, string(realtimeauth.CodeRefreshTooSoon), e.Code)
	assert.Equal(t, 15*time.Second, e.RetryAfter)
	h.waitRequested(3)
	assert.Equal(t, 15*time.Second, h.timers.Requested()[2])
	h.timers.Advance(15 * time.Second)
	second := recv(t, rec.refreshed)
	assert.Equal(t, first.SessionID, second.SessionID)
	assert.Equal(t, []string{"/token", "/refresh-token", "/refresh-token"}, h.requests())
}

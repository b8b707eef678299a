package tokenclient_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/tokenclient"
)

// Close cancels the request in flight: its waiting callers get
// ErrClosed, the server sees the request go, no event follows.
func TestCloseDuringRequest(t *testing.T) {
	h := newHarness(t)
	entered, mintDone := make(chan struct{}), make(chan error, 1)
	h.minter.Func = func(ctx context.Context, req realtimeauth.MintRequest) (realtimeauth.Token, error) {
		close(entered)
		<-ctx.Done()
		mintDone <- ctx.Err()
		return realtimeauth.Token{}, ctx.Err()
	}
	rec := newRecorder()
	c := h.client(rec, 0)
	res1 := tokenAsync(c, testCtx(t))
	res2 := tokenAsync(c, testCtx(t))
	<-entered

	require.NoError(t, c.Close())
	assert.ErrorIs(t, recv(t, res1).err, tokenclient.ErrClosed)
	assert.ErrorIs(t, recv(t, res2).err, tokenclient.ErrClosed)
	assert.ErrorIs(t, recv(t, mintDone), context.Canceled, "the server's request was cancelled")
	requireNoLeftovers(t)
	assert.Empty(t, drain(rec.errs))
	assert.Empty(t, drain(rec.refreshed))
	assert.Equal(t, 1, h.minter.Calls())
}

// Close during a backoff wait stops the wait.
func TestCloseDuringBackoff(t *testing.T) {
	h := newHarness(t)
	h.minter.SetError(errors.New("upstream down"))
	rec := newRecorder()
	c := h.client(rec, 0)
	res := tokenAsync(c, testCtx(t))
	h.waitRequested(1)
	require.Len(t, h.timers.Pending(), 1)

	require.NoError(t, c.Close())
	assert.ErrorIs(t, recv(t, res).err, tokenclient.ErrClosed)
	assert.Empty(t, h.timers.Pending(), "the backoff timer was stopped")
	requireNoLeftovers(t)
	assert.Len(t, drain(rec.errs), 1, "the failed attempt before Close, nothing after")
}

// After Close every call fails with ErrClosed, the timers are stopped and
// no event arrives, whatever the clock does.
func TestCallsAfterClose(t *testing.T) {
	h := newHarness(t)
	rec := newRecorder()
	c := h.client(rec, 0)
	_, err := c.Token(testCtx(t))
	require.NoError(t, err)
	recv(t, rec.refreshed)
	require.Len(t, h.timers.Pending(), 2)

	require.NoError(t, c.Close())
	require.NoError(t, c.Close(), "idempotent")
	assert.Empty(t, h.timers.Pending())
	_, err = c.Token(testCtx(t))
	assert.ErrorIs(t, err, tokenclient.ErrClosed)
	h.timers.Advance(time.Hour)
	assert.Empty(t, drain(rec.expired))
	assert.Empty(t, drain(rec.refreshed))
	assert.Equal(t, []string{"/token"}, h.requests())
}

// With the system clock and the default HTTP client, a client that has
// fetched a token holds a keep-alive connection and refresh timers; after
// Close no goroutine of it is left.
func TestNoGoroutineLeftAfterClose(t *testing.T) {
	h := newHarness(t)
	c, err := tokenclient.New(h.base)
	require.NoError(t, err)
	_, err = c.Token(testCtx(t))
	require.NoError(t, err)
	require.NotEmpty(t, leftovers(), "the check sees the client's connection")

	require.NoError(t, c.Close())
	requireNoLeftovers(t)
}

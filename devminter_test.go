package realtimeauth_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/realtimeauthtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDevMinter(t *testing.T) {
	clock := realtimeauthtest.NewClock(t0)
	m := realtimeauth.NewDevMinter(clock.Now)
	seen := map[string]bool{}
	for range 100 {
		tok, err := m.Mint(context.Background(), realtimeauth.MintRequest{TTL: 90 * time.Second})
		require.NoError(t, err)
		assert.Regexp(t, regexp.MustCompile(`^ek_dev_[0-9a-f]{32}$`), tok.Value)
		assert.Equal(t, t0.Add(90*time.Second), tok.ExpiresAt)
		assert.False(t, seen[tok.Value], "tokens are random")
		seen[tok.Value] = true
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := m.Mint(ctx, realtimeauth.MintRequest{TTL: time.Minute})
	assert.ErrorIs(t, err, context.Canceled)

	real := realtimeauth.NewDevMinter(nil) // time.Now
	tok, err := real.Mint(context.Background(), realtimeauth.MintRequest{TTL: time.Minute})
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now().Add(time.Minute), tok.ExpiresAt, 5*time.Second)
}

func TestUpstreamErrorWraps(t *testing.T) {
	e := &realtimeauth.UpstreamError{StatusCode: 503, Message: "overloaded", Err: context.DeadlineExceeded}
	assert.ErrorIs(t, e, context.DeadlineExceeded)
	assert.Equal(t, context.DeadlineExceeded, e.Unwrap())
	assert.Equal(t, "realtimeauth: upstream error: status 503: overloaded: context deadline exceeded", e.Error())
	plain := &realtimeauth.UpstreamError{}
	assert.NoError(t, plain.Unwrap())
	assert.False(t, errors.Is(plain, context.DeadlineExceeded))
	var ue *realtimeauth.UpstreamError
	assert.ErrorAs(t, fmt.Errorf("minting: %w", plain), &ue)
	assert.Equal(t, "realtimeauth: upstream error", plain.Error())
}

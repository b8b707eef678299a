package realtimeauth_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/realtimeauthtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAnswerModeAndModel: token and refresh answers say "mode" (the
// minter's, "realtime" by default, "demo" from NewDevMinter) and "model" (the
// model the token was minted for, when the minter names one).
func TestAnswerModeAndModel(t *testing.T) {
	clock := realtimeauthtest.NewClock(t0)
	dev, err := realtimeauth.New(realtimeauth.NewDevMinter(clock.Now), realtimeauth.WithClock(clock.Now), realtimeauth.WithLogger(quietLogger()))
	require.NoError(t, err)
	m := issueToken(t, dev, defaultRemote)
	assert.Equal(t, "demo", m["mode"])
	assert.NotContains(t, m, "model")

	r := newRig(t, realtimeauth.WithLimits(realtimeauth.Limits{MaxRefreshes: 5, MinRefreshInterval: -1}))
	r.mint.Func = func(_ context.Context, q realtimeauth.MintRequest) (realtimeauth.Token, error) {
		return realtimeauth.Token{Value: "ek_m", ExpiresAt: r.clock.Now().Add(q.TTL), Model: "gpt-realtime"}, nil
	}
	m = issueToken(t, r.h, defaultRemote)
	assert.Equal(t, "realtime", m["mode"])
	assert.Equal(t, "gpt-realtime", m["model"])
	w := serveReq(r.h, req{path: refrURL, body: refreshBody(m["sessionId"].(string))})
	require.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, "gpt-realtime", jsonBody(t, w.Body.Bytes())["model"])
}

// localMinter records whether its context had a deadline, and says it
// mints in-process when local is set.
type localMinter struct {
	realtimeauthtest.Minter
	local       bool
	hadDeadline bool
}

func (m *localMinter) Local() bool { return m.local }

func (m *localMinter) Mint(ctx context.Context, q realtimeauth.MintRequest) (realtimeauth.Token, error) {
	_, m.hadDeadline = ctx.Deadline()
	return m.Minter.Mint(ctx, q)
}

// TestDeadlineOnlyWhereNeeded: a Minter gets Limits.UpstreamTimeout's
// deadline unless it reports Local() true (an in-process minter, which
// would only pay a timer for it).
func TestDeadlineOnlyWhereNeeded(t *testing.T) {
	for _, local := range []bool{false, true} {
		m := &localMinter{local: local}
		h, err := realtimeauth.New(m, realtimeauth.WithLogger(quietLogger()), realtimeauth.WithLimits(realtimeauth.Limits{UpstreamTimeout: time.Second}))
		require.NoError(t, err)
		issueToken(t, h, defaultRemote)
		assert.Equal(t, !local, m.hadDeadline, "local %v", local)
	}
	assert.True(t, realtimeauth.NewDevMinter(nil).(interface{ Local() bool }).Local())
}

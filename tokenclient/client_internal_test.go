package tokenclient

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/realtimeauth/realtimeauth/realtimeauthtest"
)

// inFlight reports whether a round is running.
func (c *Client) inFlight() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.flight != nil
}

// While refreshes fail, calls to Token get the current token and do not
// start a round before the pause after the last failed one is over.
func TestTokenKeepsThePauseAfterAFailedRound(t *testing.T) {
	for _, auto := range []bool{true, false} {
		t.Run(fmt.Sprintf("auto-refresh %v", auto), func(t *testing.T) {
			t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
			tc := realtimeauthtest.NewTimerClock(realtimeauthtest.NewClock(t0))
			var failing atomic.Bool
			var requests atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := requests.Add(1)
				if failing.Load() {
					w.WriteHeader(http.StatusBadGateway)
					return
				}
				fmt.Fprintf(w, `{"success":true,"token":"ek_%d","expiresIn":60,"sessionId":"s"}`, n)
			}))
			defer srv.Close()
			errs := make(chan *Error, 10)
			c, err := New(srv.URL, WithClock(tc), WithRand(func() float64 { return 0.5 }), WithJitter(0),
				WithBackoff(time.Second, 10*time.Second, 1), WithAutoRefresh(auto),
				WithEvents(Events{Error: func(e *Error) { errs <- e }}))
			require.NoError(t, err)
			defer c.Close()
			ctx := context.Background()
			first, err := c.Token(ctx)
			require.NoError(t, err)

			failing.Store(true)
			tc.Advance(30 * time.Second) // the refresh is due
			if !auto {
				tok, err := c.Token(ctx) // starts it
				require.NoError(t, err)
				assert.Equal(t, first, tok)
			}
			<-errs // the round (one attempt) failed and is over
			assert.False(t, c.inFlight())

			tc.Advance(9 * time.Second)
			for range 3 {
				tok, err := c.Token(ctx)
				require.NoError(t, err)
				assert.Equal(t, first, tok)
				assert.False(t, c.inFlight(), "no new round within the pause")
			}
			assert.Equal(t, int32(2), requests.Load())

			tc.Advance(time.Second) // the pause is over
			if !auto {
				_, err := c.Token(ctx)
				require.NoError(t, err)
			}
			<-errs
			assert.Equal(t, int32(3), requests.Load())
		})
	}
}

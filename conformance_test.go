package realtimeauth_test

import (
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/realtimeauthtest"
)

// The conformance suites against the in-memory implementations; redisstore
// runs the same suites against Redis.

func TestMemoryStoreConformance(t *testing.T) {
	realtimeauthtest.TestSessionStore(t, func(*testing.T) realtimeauth.SessionStore {
		return realtimeauth.NewMemoryStore()
	})
}

func TestMemoryLimiterConformance(t *testing.T) {
	realtimeauthtest.TestLimiter(t, func(t *testing.T, limit int, window time.Duration) realtimeauth.Limiter {
		l, err := realtimeauth.NewMemoryLimiter(limit, window)
		if err != nil {
			t.Fatal(err)
		}
		return l
	})
}

func TestMemoryAbuseGuardConformance(t *testing.T) {
	realtimeauthtest.TestAbuseGuard(t, func(_ *testing.T, strikes int, window, blockFor time.Duration) realtimeauth.AbuseGuard {
		return mustGuard(strikes, window, blockFor)
	})
}

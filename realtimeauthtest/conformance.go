package realtimeauthtest

// The conformance suites: one per interface, run by every implementation
// (the memory ones in the core's tests, redisstore's against a real Redis).
// Each case names the contract line it checks; they use fixed times (whole
// milliseconds, so that a backend keeping milliseconds passes) and never
// sleep.

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
)

// suiteT0 is the suites' base time: a whole minute, so that every window
// the suites use starts its sub-windows there.
var suiteT0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// contractCase is one row of a suite: the contract line it checks, and the
// check.
type contractCase[R any] struct {
	name     string
	contract string
	run      func(t *testing.T, r R)
}

func runCases[R any](t *testing.T, cases []contractCase[R], rig func(t *testing.T) R) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("contract: %s", c.contract)
				}
			})
			c.run(t, rig(t))
		})
	}
}

// concurrently runs f n times at once and returns how many returned true.
func concurrently(n int, f func(i int) bool) int {
	var ok atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			if f(i) {
				ok.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	return int(ok.Load())
}

// sessionString is a Session for failure messages and comparisons, its
// times in UTC milliseconds.
func sessionString(s realtimeauth.Session) string {
	ms := func(t time.Time) int64 { return t.UnixMilli() }
	return fmt.Sprintf("{%s ip=%s client=%s subject=%q created=%d expires=%d issued=%d refreshes=%d revoked=%v}",
		s.ID, s.ClientIP, s.Client, s.Subject, ms(s.CreatedAt), ms(s.ExpiresAt), ms(s.LastIssuedAt), s.Refreshes, s.Revoked)
}

package realtimeauth_test

import (
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMain fails the package's tests when a goroutine of ours outlives
// them: a handler, minter, store or test server that was not closed.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := leftoverGoroutines(5 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutines left after the tests:\n\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// checkGoroutines fails t if goroutines started during it are still
// running (after a grace period) when it ends. Call it first in a test that
// is not parallel, so that its cleanup runs last; goroutines of other tests
// started before it are not counted.
func checkGoroutines(t *testing.T) {
	t.Helper()
	before := map[string]bool{}
	for _, g := range ourGoroutines() {
		before[goroutineID(g)] = true
	}
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			var leaked []string
			for _, g := range ourGoroutines() {
				if !before[goroutineID(g)] {
					leaked = append(leaked, g)
				}
			}
			if len(leaked) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("goroutines left by the test:\n\n%s", strings.Join(leaked, "\n\n"))
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// goroutineID returns the "goroutine N" header of a stack.
func goroutineID(stack string) string {
	id, _, _ := strings.Cut(stack, " [")
	return id
}

// leftoverGoroutines waits up to grace for every goroutine but the
// runtime's and the test framework's own to end, and returns the stacks of
// those that do not. Keep-alive connections of the default transport are
// closed first; those of other transports end when their server closes,
// which takes a moment, hence the polling.
func leftoverGoroutines(grace time.Duration) string {
	deadline := time.Now().Add(grace)
	for {
		if t, ok := http.DefaultTransport.(*http.Transport); ok {
			t.CloseIdleConnections()
		}
		leaked := ourGoroutines()
		if len(leaked) == 0 {
			return ""
		}
		if time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ourGoroutines returns the stacks of the goroutines that are not the
// caller's, the runtime's or the testing package's.
func ourGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for i, g := range strings.Split(string(buf), "\n\n") {
		if i == 0 || benignGoroutine(g) { // the first is this one
			continue
		}
		out = append(out, g)
	}
	return out
}

// benignGoroutine reports whether a goroutine belongs to the runtime or the
// test framework and outlives any test by design.
func benignGoroutine(stack string) bool {
	for _, s := range []string{
		"testing.(*M).",
		"testing.runTests",
		"testing.runFuzzing",
		"testing.(*F).Fuzz",
		"testing/internal/testdeps.",
		"os/signal.signal_recv",
		"os/signal.loop",
		"runtime.ensureSigM",
		"runtime/trace.",
	} {
		if strings.Contains(stack, s) {
			return true
		}
	}
	return strings.TrimSpace(stack) == ""
}

func silentLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

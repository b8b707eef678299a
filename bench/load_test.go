package bench

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// heapTolerance is how much the heap may grow between the end of the
// warm-up and the end of the soak. The handler's state is bounded by the
// generator's finite address pools (70,656 addresses, each at most a
// limiter entry and an abuse-guard entry, under 100 bytes apiece: about 7 MB
// once every address has been seen) and by the sessions alive within one
// SessionTTL, reached during the warm-up. It catches a leak of a few hundred
// bytes per request or more (a 10 s run sends 10,000 requests or more);
// smaller leaks need the README's 60 s soak run or longer.
const heapTolerance = 8 << 20

// TestSoak runs the load server in this process and drives it with the soak
// mix for 10 s after a warm-up of one session lifetime: nothing may be
// lost, every answer must be well-formed JSON of the contract with an
// expected status, and the heap must stay flat.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak: 22 s of load; skipped with -short")
	}
	srv, err := StartServer(SoakOptions())
	require.NoError(t, err)
	defer func() { assert.NoError(t, srv.Stop()) }()
	rep, err := RunSoak(SoakConfig{
		Server:      srv.Addr,
		Warmup:      SessionTTL + 2*time.Second,
		Duration:    10 * time.Second,
		Concurrency: 16,
		Mem:         func() (Mem, error) { return ReadMem(), nil },
		SampleEvery: 5 * time.Second,
	})
	require.NoError(t, err)
	rep.Print(os.Stdout)
	assert.Zero(t, rep.Lost, "lost requests")
	assert.Zero(t, rep.Malformed, "malformed answers")
	assert.Zero(t, rep.Unexpected, "answers with a status their request cannot get")
	assert.Positive(t, rep.ByKind[kindToken][200], "tokens issued")
	assert.Positive(t, rep.ByKind[kindRefresh][200], "refreshes")
	assert.Positive(t, rep.ByKind[kindFlood][429], "rate-limited requests")
	assert.LessOrEqual(t, rep.MemEnd.HeapAlloc, rep.MemStart.HeapAlloc+heapTolerance,
		"heap grew from %d to %d bytes", rep.MemStart.HeapAlloc, rep.MemEnd.HeapAlloc)
}

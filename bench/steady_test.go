package bench

import (
	"log"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRunSteady runs both sides briefly against a server in this process
// with the handler's default logger pointed at a file: every request is
// answered, the CPU is counted, the log file gets a line per token.
func TestRunSteady(t *testing.T) {
	if testing.Short() {
		t.Skip("steady: about 8 s of load; skipped with -short")
	}
	logPath := filepath.Join(t.TempDir(), "server.log")
	f, err := os.Create(logPath)
	require.NoError(t, err)
	defer f.Close()
	prev := log.Writer()
	log.SetOutput(f)
	defer log.SetOutput(prev)

	srv, err := StartServer(CompareOptions())
	require.NoError(t, err)
	defer func() { assert.NoError(t, srv.Stop()) }()
	cpu := func() (time.Duration, error) { return ProcCPU(os.Getpid()) }
	var runs []CompareRun
	var run CompareRun
	for _, side := range []Side{SideHandler, SideBare} {
		cfg := SteadyConfig{Server: srv.Addr, Side: side, Concurrency: 8, Duration: time.Second,
			MinWarmup: time.Second, MaxWarmup: 3 * time.Second, CPU: cpu}
		if side == SideHandler {
			cfg.Live = func() (int, error) { return RemoteLive(srv.Addr) }
		}
		res, err := RunSteady(cfg)
		require.NoError(t, err)
		assert.Positive(t, res.Requests, side.String())
		assert.Positive(t, res.CPU, side.String())
		assert.Zero(t, res.Lost+res.Failed, "%s: %v", side, res.Problems)
		if side == SideHandler {
			assert.Positive(t, res.LiveEnd)
			assert.NotEmpty(t, res.LiveWarmup)
			run.Handler = res
		} else {
			run.Bare = res
		}
	}
	lines, size, err := CountLines(logPath)
	require.NoError(t, err)
	assert.Less(t, lines, int64(run.Handler.Answered), "the default logger writes no line per issued token (issue 14)")
	run.LogLines, run.LogBytes = lines, size
	runs = append(runs, run)
	PrintCompare(os.Stdout, runs)
}

func TestSettled(t *testing.T) {
	assert.False(t, settled([]int{100, 100}))
	assert.True(t, settled([]int{1, 100, 98, 100}))
	assert.False(t, settled([]int{80, 90, 100}))
	assert.False(t, settled([]int{0, 0, 0}))
}

func TestProcCPU(t *testing.T) {
	d, err := ProcCPU(os.Getpid())
	require.NoError(t, err)
	assert.GreaterOrEqual(t, d, time.Duration(0))
	_, err = ProcCPU(-1)
	assert.Error(t, err)
}

func TestCountLines(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x")
	require.NoError(t, os.WriteFile(p, []byte("a\nb\nc"), 0o600))
	lines, size, err := CountLines(p)
	require.NoError(t, err)
	assert.Equal(t, int64(2), lines)
	assert.Equal(t, int64(5), size)
	_, _, err = CountLines(filepath.Join(t.TempDir(), "none"))
	assert.Error(t, err)
}

func TestMedian(t *testing.T) {
	assert.Equal(t, 0.0, median(nil))
	assert.Equal(t, 2.0, median([]float64{3, 1, 2}))
	assert.Equal(t, 2.5, median([]float64{4, 1, 2, 3}))
}

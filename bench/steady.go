package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

// Side is what a steady-state run drives: the handler's POST /token, or
// the bare net/http handler writing the same answer.
type Side int

const (
	SideHandler Side = iota
	SideBare
)

func (s Side) String() string {
	if s == SideBare {
		return "bare net/http, same answer"
	}
	return "realtimeauth POST /token"
}

// SteadyConfig sets up one side of the comparison at steady state.
type SteadyConfig struct {
	Server      string // host:port of a load server
	Side        Side
	Concurrency int           // workers, each with one keep-alive connection from its own address
	Duration    time.Duration // the measured phase
	// MinWarmup is the least traffic before the measured phase; with Live
	// set the warm-up goes on until the live-session count is stable (its
	// last three one-second readings within 5% of each other), at most
	// MaxWarmup.
	MinWarmup, MaxWarmup time.Duration
	// Live reads the server's live-session count; nil for a side that keeps
	// no state (the bare handler).
	Live func() (int, error)
	// CPU reads the server process's CPU time (user + system) so far.
	CPU func() (time.Duration, error)
	// Measuring, when set, is called on a goroutine of its own as the
	// measured phase begins, with its length (to take a profile, say).
	Measuring func(d time.Duration)
}

// SteadyResult is one side measured at steady state.
type SteadyResult struct {
	Side               Side
	Warmup             time.Duration
	Stable             bool   // the live-session count settled within MaxWarmup (always true without Live)
	LiveStart, LiveEnd int    // live sessions at the start and end of the measured phase
	LiveWarmup         []int  // the warm-up's readings, one a second
	Requests           uint64 // answered with a 200 in the measured phase
	Answered           uint64 // answered with a 200 over the whole run, warm-up included
	Lost, Failed       uint64 // over the whole run, warm-up included
	Elapsed            time.Duration
	CPU                time.Duration // the server's CPU time over the measured phase
	P50, P99           time.Duration
	Problems           []string
}

// PerSecond is the measured phase's throughput.
func (r SteadyResult) PerSecond() float64 { return float64(r.Requests) / r.Elapsed.Seconds() }

// CPUPerRequest is the server's CPU time per answered request in the
// measured phase.
func (r SteadyResult) CPUPerRequest() time.Duration {
	if r.Requests == 0 {
		return 0
	}
	return r.CPU / time.Duration(r.Requests)
}

// RunSteady drives one side with Concurrency keep-alive workers sending
// the next request as soon as the answer is in: first a warm-up that lets
// the live sessions reach the level the session TTL holds them at, then
// the measured phase, whose requests, latencies and server CPU time are
// the result.
func RunSteady(cfg SteadyConfig) (SteadyResult, error) {
	res := SteadyResult{Side: cfg.Side, Stable: true}
	run := startSteady(cfg)
	start := time.Now()
	live, err := warmUpSteady(cfg, &res, start)
	if err != nil {
		run.finish()
		return res, err
	}
	res.Warmup, res.LiveWarmup = time.Since(start), live
	if err := run.measure(cfg, &res, live); err != nil {
		return res, err
	}
	total, lat := newTally(), histogram{}
	for w, t := range run.tallies {
		total.merge(t)
		lat.merge(&run.hists[w])
	}
	res.Lost, res.Failed = total.lost, total.malformed+total.unexpected
	res.P50, res.P99 = lat.quantile(0.5), lat.quantile(0.99)
	res.Problems = total.examples
	return res, nil
}

// steadyRun is a steady-state run's workers and what they count.
type steadyRun struct {
	answered        atomic.Uint64 // 200s over the whole run
	measuring, stop atomic.Bool
	tallies         []*tally
	hists           []histogram // latencies in the measured phase, one per worker
	wg              sync.WaitGroup
}

// startSteady starts cfg.Concurrency workers, each on a keep-alive
// connection from an address of its own in 127.4.0.0/16.
func startSteady(cfg SteadyConfig) *steadyRun {
	run := &steadyRun{tallies: make([]*tally, cfg.Concurrency), hists: make([]histogram, cfg.Concurrency)}
	kind, req := kindCompareToken, reqToken
	if cfg.Side == SideBare {
		kind, req = kindCompareBare, buildRequest("POST", BarePath, [][2]string{hdrOrigin}, "")
	}
	for w := range cfg.Concurrency {
		t := newTally()
		run.tallies[w] = t
		run.wg.Go(func() {
			c := &client{server: cfg.Server, t: t}
			defer c.close()
			src := netip.AddrFrom4([4]byte{127, 4, byte(w >> 8), byte(w&0xff) + 1})
			for !run.stop.Load() {
				start := time.Now()
				if r, ok := c.send(kind, src, req, true); ok && r.status == 200 {
					run.answered.Add(1)
					if run.measuring.Load() {
						run.hists[w].add(time.Since(start))
					}
				}
			}
		})
	}
	return run
}

// finish stops the workers and waits for their last requests.
func (run *steadyRun) finish() {
	run.stop.Store(true)
	run.wg.Wait()
}

// warmUpSteady waits, reading the live-session count once a second, until
// MinWarmup has passed since start and the count has settled (res.Stable
// false if it has not by MaxWarmup); it returns the readings.
func warmUpSteady(cfg SteadyConfig, res *SteadyResult, start time.Time) ([]int, error) {
	var live []int
	for {
		time.Sleep(time.Second)
		el := time.Since(start)
		if cfg.Live == nil {
			if el >= cfg.MinWarmup {
				return live, nil
			}
			continue
		}
		n, err := cfg.Live()
		if err != nil {
			return live, err
		}
		live = append(live, n)
		if el >= cfg.MinWarmup && settled(live) {
			return live, nil
		}
		if el >= cfg.MaxWarmup {
			res.Stable = false
			return live, nil
		}
	}
}

// measure runs the measured phase for cfg.Duration, then finishes the
// run, and records in res its requests, length, CPU time and live
// sessions at its start (the last warm-up reading) and end.
func (run *steadyRun) measure(cfg SteadyConfig, res *SteadyResult, live []int) error {
	cpu0, err := cfg.CPU()
	if err != nil {
		run.finish()
		return err
	}
	if cfg.Live != nil {
		res.LiveStart = live[len(live)-1]
	}
	n0, t0 := run.answered.Load(), time.Now()
	run.measuring.Store(true)
	var hook sync.WaitGroup
	if cfg.Measuring != nil {
		hook.Go(func() { cfg.Measuring(cfg.Duration) })
	}
	time.Sleep(cfg.Duration)
	n1, t1 := run.answered.Load(), time.Now()
	cpu1, err := cfg.CPU()
	run.measuring.Store(false)
	if err == nil && cfg.Live != nil {
		res.LiveEnd, err = cfg.Live()
	}
	run.finish()
	hook.Wait()
	if err != nil {
		return err
	}
	res.Requests, res.Elapsed, res.CPU, res.Answered = n1-n0, t1.Sub(t0), cpu1-cpu0, run.answered.Load()
	return nil
}

// settled reports whether the last three readings lie within 5% of the
// largest of them.
func settled(live []int) bool {
	if len(live) < 3 {
		return false
	}
	last := live[len(live)-3:]
	lo, hi := min(last[0], last[1], last[2]), max(last[0], last[1], last[2])
	return hi > 0 && float64(hi-lo) <= 0.05*float64(hi)
}

// ProcCPU returns the CPU time (user + system, every thread) that process
// pid has used, from /proc/<pid>/stat in clock ticks of 10 ms (Linux's
// USER_HZ on every architecture Go supports).
func ProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; the fields after it are
	// plain numbers: state is field 3, utime 14, stime 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("bench: unreadable /proc stat")
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 13 {
		return 0, errors.New("bench: short /proc stat")
	}
	ut, err1 := strconv.ParseUint(string(f[11]), 10, 64)
	st, err2 := strconv.ParseUint(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("bench: unreadable /proc stat times")
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// CountLines returns the number of lines and bytes in the file at path.
func CountLines(path string) (lines, size int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<16)
	buf := make([]byte, 1<<16)
	for {
		n, err := br.Read(buf)
		lines += int64(bytes.Count(buf[:n], []byte{'\n'}))
		size += int64(n)
		if err == io.EOF {
			return lines, size, nil
		}
		if err != nil {
			return lines, size, err
		}
	}
}

// CompareRun is one run of both sides, each in a fresh server process.
type CompareRun struct {
	Handler, Bare      SteadyResult
	LogLines, LogBytes int64 // written by the handler's server over its whole run (Handler.Answered tokens)
}

// Ratio is the handler's throughput over the bare handler's.
func (r CompareRun) Ratio() float64 { return r.Handler.PerSecond() / r.Bare.PerSecond() }

// CPURatio is the bare handler's CPU per request over the handler's: the
// throughput ratio one core would reach, whatever the neighbours do.
func (r CompareRun) CPURatio() float64 {
	return float64(r.Bare.CPUPerRequest()) / float64(r.Handler.CPUPerRequest())
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// PrintCompare writes every run and the medians over the runs.
func PrintCompare(w io.Writer, runs []CompareRun) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "run\tside\twarm-up\tlive sessions\trequests\tper second\tCPU µs/req\tp50\tp99\tlost\tfailed\tlog lines")
	for i, r := range runs {
		for _, s := range []SteadyResult{r.Handler, r.Bare} {
			liveCol, logCol := "-", "-"
			if s.Side == SideHandler {
				liveCol = fmt.Sprintf("%d→%d", s.LiveStart, s.LiveEnd)
				if !s.Stable {
					liveCol += " (unsettled)"
				}
				logCol = fmt.Sprintf("%d (%.2f/req)", r.LogLines, float64(r.LogLines)/float64(max(s.Answered, 1)))
			}
			fmt.Fprintf(tw, "%d\t%s\t%v\t%s\t%d\t%.0f\t%.1f\t%v\t%v\t%d\t%d\t%s\n", i+1, s.Side, s.Warmup.Round(time.Second),
				liveCol, s.Requests, s.PerSecond(), float64(s.CPUPerRequest())/1e3, s.P50, s.P99, s.Lost, s.Failed, logCol)
		}
	}
	_ = tw.Flush()
	var ratio, cpuRatio, hps, bps, hcpu, bcpu []float64
	for _, r := range runs {
		ratio = append(ratio, r.Ratio())
		cpuRatio = append(cpuRatio, r.CPURatio())
		hps = append(hps, r.Handler.PerSecond())
		bps = append(bps, r.Bare.PerSecond())
		hcpu = append(hcpu, float64(r.Handler.CPUPerRequest())/1e3)
		bcpu = append(bcpu, float64(r.Bare.CPUPerRequest())/1e3)
	}
	fmt.Fprintf(w, "medians over %d runs: handler %.0f/s at %.1f µs CPU/req; bare %.0f/s at %.1f µs CPU/req\n",
		len(runs), median(hps), median(hcpu), median(bps), median(bcpu))
	fmt.Fprintf(w, "ratio (handler / bare): throughput %.2f (runs %s), CPU per request %.2f (runs %s)\n",
		median(ratio), list(ratio), median(cpuRatio), list(cpuRatio))
	for _, r := range runs {
		for _, p := range append(r.Handler.Problems, r.Bare.Problems...) {
			fmt.Fprintf(w, "problem: %s\n", p)
		}
	}
}

func list(v []float64) string {
	var b bytes.Buffer
	for i, x := range v {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%.2f", x)
	}
	return b.String()
}

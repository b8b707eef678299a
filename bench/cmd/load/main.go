// Command load drives realtimeauth's handler (as the example server
// configures it, with a zero-latency minter) over loopback and reports
// what came back.
//
//	go run ./cmd/load -mode soak -duration 60s
//	go run ./cmd/load -mode compare -duration 20s -runs 3
//	go run ./cmd/load -mode attack -duration 10s
//
// soak sends a mix of token, refresh, health, flood (rate-limited and then
// blocked) and bad requests from many source addresses in 127.0.0.0/8, and
// reports requests sent, responses by status, malformed answers, lost
// requests, p50/p99 latency and the server's heap and RSS.
//
// compare measures what users get: POST /token to the handler with its
// default logger (slog.Default, pointed at a file), and to a bare net/http
// handler writing the same headers and an answer of the same size, each in
// a fresh server process. Each side warms up until the live-session count
// is stable under the 10 s session TTL, then is measured for -duration; the
// report gives both throughputs, the server's CPU time per request (from
// /proc/<pid>/stat) and the ratios, per run and as medians over -runs runs.
//
// attack replays issue 10's attacks, one at a time, against a handler with
// the default limits whose OpenAI minter talks to a fake upstream that
// counts mints, with a legitimate client beside each attack, and reports
// per attack the upstream mints against the formula (docs/limits.md), the
// legitimate client's success rate, the log lines written and the memory.
//
// Where taskset exists and there are at least two CPUs, the server runs in
// a child process pinned to CPU 0 and the generator on CPU 1. Every address
// used is in 127.0.0.0/8; every mode stops by itself.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/bench"
)

func main() {
	var (
		mode        = flag.String("mode", "soak", "soak, compare, attack or all")
		duration    = flag.Duration("duration", 60*time.Second, "measured run time (per side and run, for compare; per attack, for attack)")
		warmup      = flag.Duration("warmup", bench.SessionTTL+2*time.Second, "soak traffic before the start memory figures; compare: the least warm-up of the handler side")
		concurrency = flag.Int("concurrency", 64, "workers, each with one connection at a time")
		runs        = flag.Int("runs", 3, "compare: runs of both sides, each in fresh server processes")
		only        = flag.String("attacks", "", "attack: comma-separated names of the attacks to run (default all)")
		pin         = flag.Bool("pin", true, "run the server in a child pinned to CPU 0 and the generator on CPU 1, where possible")
		serve       = flag.String("serve", "", "internal: serve with these options (soak or compare) until stdin closes")
		logFile     = flag.String("log-file", "", "internal: where the served handler's default logger writes")
		cpuProfile  = flag.String("cpuprofile", "", "compare: write a CPU profile of the handler's server over each run's measured phase to this path (run i to path.i); the profile costs the server a little CPU")
	)
	flag.Parse()
	if *serve != "" {
		if err := serveChild(*serve, *logFile); err != nil {
			fmt.Fprintln(os.Stderr, "load server:", err)
			os.Exit(1)
		}
		return
	}
	if *duration <= 0 || *duration > time.Hour || *concurrency < 1 || *concurrency > 4096 || *runs < 1 || *runs > 20 {
		fmt.Fprintln(os.Stderr, "load: -duration must be in (0, 1h], -concurrency in 1..4096 and -runs in 1..20")
		os.Exit(2)
	}
	ok := true
	if *mode == "soak" || *mode == "all" {
		ok = runSoak(*duration, *warmup, *concurrency, *pin) && ok
	}
	if *mode == "compare" || *mode == "all" {
		ok = runCompare(*duration, *warmup, *runs, *concurrency, *pin, *cpuProfile) && ok
	}
	if *mode == "attack" || *mode == "all" {
		ok = runAttack(*duration, *only) && ok
	}
	if *mode != "soak" && *mode != "compare" && *mode != "attack" && *mode != "all" {
		fmt.Fprintln(os.Stderr, "load: -mode must be soak, compare, attack or all")
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}

// server is where the load server runs: a child process (pinned where
// possible), or this process.
type server struct {
	addr string
	pid  int // the child's, 0 in this process
	mem  func() (bench.Mem, error)
	stop func()
}

func startServer(opts string, pin bool) (server, error) {
	if taskset, err := exec.LookPath("taskset"); pin && err == nil && runtime.NumCPU() >= 2 {
		return startChild(taskset, opts, "")
	}
	fmt.Println("server: in this process, not pinned (needs taskset and 2 CPUs)")
	s, err := bench.StartServer(options(opts))
	if err != nil {
		return server{}, err
	}
	return server{addr: s.Addr, mem: func() (bench.Mem, error) { return bench.ReadMem(), nil },
		stop: func() { _ = s.Stop() }}, nil
}

func options(name string) []realtimeauth.Option {
	if name == "compare" {
		return bench.CompareOptions()
	}
	return bench.SoakOptions()
}

var pinned bool // the generator has been pinned to CPU 1

// startChild runs this program as the server, under taskset -c 0 when
// taskset is not "" (and then pins this process, every thread, to CPU 1),
// its handler's default logger writing to logFile when that is not "".
func startChild(taskset, opts, logFile string) (server, error) {
	self, err := os.Executable()
	if err != nil {
		return server{}, err
	}
	args := []string{"-serve", opts}
	if logFile != "" {
		args = append(args, "-log-file", logFile)
	}
	cmd := exec.Command(self, args...)
	if taskset != "" {
		cmd = exec.Command(taskset, append([]string{"-c", "0", self}, args...)...)
	}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return server{}, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return server{}, err
	}
	if err := cmd.Start(); err != nil {
		return server{}, err
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return server{}, fmt.Errorf("server child: %v", err)
	}
	addr := strings.TrimSpace(line)
	if taskset != "" && !pinned {
		out, err := exec.Command(taskset, "-a", "-p", "-c", "1", strconv.Itoa(os.Getpid())).CombinedOutput()
		if err != nil {
			_ = stdin.Close()
			_ = cmd.Wait()
			return server{}, fmt.Errorf("taskset on the generator: %v: %s", err, out)
		}
		runtime.GOMAXPROCS(1)
		pinned = true
		fmt.Printf("server: child pid %d pinned to CPU 0 (taskset -c 0, GOMAXPROCS 1); generator pinned to CPU 1 (GOMAXPROCS 1)\n", cmd.Process.Pid)
	}
	return server{
		addr: addr,
		pid:  cmd.Process.Pid, // taskset execs the program: the same process
		mem:  func() (bench.Mem, error) { return bench.RemoteMem(addr) },
		stop: func() {
			_ = stdin.Close() // the child shuts down when its stdin closes
			_ = cmd.Wait()
		},
	}, nil
}

// serveChild is the child's side: serve, print the address, and stop when
// the parent closes stdin (or dies). With logFile, the default logger
// (log.Default, under slog.Default) writes there, as a server whose stderr
// goes to a file does.
func serveChild(opts, logFile string) error {
	if logFile != "" {
		f, err := os.OpenFile(logFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return err
		}
		defer f.Close()
		log.SetOutput(f)
	}
	if opts == "compare" {
		// GOMAXPROCS follows the pinned CPU set; say so for the record.
		fmt.Fprintf(os.Stderr, "load server: GOMAXPROCS %d\n", runtime.GOMAXPROCS(0))
	}
	s, err := bench.StartServer(options(opts))
	if err != nil {
		return err
	}
	fmt.Println(s.Addr)
	_, _ = io.Copy(io.Discard, os.Stdin)
	return s.Stop()
}

func runSoak(d, warmup time.Duration, concurrency int, pin bool) bool {
	srv, err := startServer("soak", pin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		return false
	}
	defer srv.stop()
	rep, err := bench.RunSoak(bench.SoakConfig{Server: srv.addr, Duration: d, Warmup: warmup,
		Concurrency: concurrency, Mem: srv.mem})
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		return false
	}
	fmt.Printf("soak: %d workers, warm-up %v, then %v measured\n", concurrency, warmup, d)
	rep.Print(os.Stdout)
	return rep.Lost == 0 && rep.Malformed == 0 && rep.Unexpected == 0
}

// runCompare runs both sides runs times, each side in a fresh server
// child whose CPU time the kernel counts.
func runCompare(d, minWarmup time.Duration, runs, concurrency int, pin bool, profile string) bool {
	taskset, err := exec.LookPath("taskset")
	if !pin || err != nil || runtime.NumCPU() < 2 {
		taskset = ""
		fmt.Println("compare: server children not pinned (needs taskset and 2 CPUs)")
	}
	fmt.Printf("compare: %d workers with keep-alive connections; per run and side a fresh server, warm-up (handler: until the live sessions settle under the %v session TTL), then %v measured\n",
		concurrency, bench.SessionTTL, d)
	ok := true
	var results []bench.CompareRun
	for i := range runs {
		var run bench.CompareRun
		for _, side := range []bench.Side{bench.SideHandler, bench.SideBare} {
			prof := ""
			if profile != "" && side == bench.SideHandler {
				prof = profile
				if runs > 1 {
					prof = fmt.Sprintf("%s.%d", profile, i+1)
				}
			}
			res, lines, size, err := compareSide(taskset, side, d, minWarmup, concurrency, prof)
			if err != nil {
				fmt.Fprintln(os.Stderr, "load:", err)
				return false
			}
			ok = ok && res.Lost == 0 && res.Failed == 0
			if side == bench.SideHandler {
				run.Handler, run.LogLines, run.LogBytes = res, lines, size
			} else {
				run.Bare = res
			}
		}
		fmt.Printf("run %d: handler %.0f/s %.1f µs CPU/req, bare %.0f/s %.1f µs CPU/req, ratio %.2f (CPU %.2f), %d log lines (%d bytes)\n",
			i+1, run.Handler.PerSecond(), float64(run.Handler.CPUPerRequest())/1e3, run.Bare.PerSecond(),
			float64(run.Bare.CPUPerRequest())/1e3, run.Ratio(), run.CPURatio(), run.LogLines, run.LogBytes)
		results = append(results, run)
	}
	bench.PrintCompare(os.Stdout, results)
	return ok
}

func compareSide(taskset string, side bench.Side, d, minWarmup time.Duration, concurrency int, profile string) (bench.SteadyResult, int64, int64, error) {
	logs, err := os.CreateTemp("", "realtimeauth-compare-*.log")
	if err != nil {
		return bench.SteadyResult{}, 0, 0, err
	}
	_ = logs.Close()
	defer os.Remove(logs.Name())
	srv, err := startChild(taskset, "compare", logs.Name())
	if err != nil {
		return bench.SteadyResult{}, 0, 0, err
	}
	cfg := bench.SteadyConfig{
		Server: srv.addr, Side: side, Concurrency: concurrency, Duration: d,
		MinWarmup: 3 * time.Second, MaxWarmup: 3 * time.Second,
		CPU: func() (time.Duration, error) { return bench.ProcCPU(srv.pid) },
	}
	if side == bench.SideHandler {
		cfg.MinWarmup, cfg.MaxWarmup = max(minWarmup, bench.SessionTTL), max(minWarmup, 4*bench.SessionTTL)
		cfg.Live = func() (int, error) { return bench.RemoteLive(srv.addr) }
	}
	if profile != "" {
		cfg.Measuring = func(d time.Duration) {
			if err := bench.RemoteProfile(srv.addr, d, profile); err != nil {
				fmt.Fprintln(os.Stderr, "load: profile:", err)
			}
		}
	}
	res, err := bench.RunSteady(cfg)
	srv.stop()
	if len(res.LiveWarmup) > 0 {
		fmt.Printf("warm-up: live sessions each second %v\n", res.LiveWarmup)
	}
	if err != nil {
		return res, 0, 0, err
	}
	lines, size, err := bench.CountLines(logs.Name())
	return res, lines, size, err
}

// runAttack runs the attacks in this process and prints what each got.
func runAttack(d time.Duration, only string) bool {
	cfg := bench.AttackConfig{Duration: d}
	if only != "" {
		cfg.Only = strings.Split(only, ",")
	}
	fmt.Printf("attack: each attack %v against a fresh handler (default allowances) on 127.0.0.1 whose OpenAI minter talks to a fake upstream counting mints, a legitimate client beside it\n", d)
	rs, err := bench.RunAttacks(cfg)
	bench.PrintAttacks(os.Stdout, rs)
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		return false
	}
	ok := true
	for _, r := range rs {
		ok = ok && r.OK()
	}
	return ok
}

// Command load drives realtimeauth's handler (as the example server
// configures it, with a zero-latency minter) over loopback and reports
// what came back.
//
//	go run ./cmd/load -mode soak -duration 60s
//	go run ./cmd/load -mode compare -duration 20s
//
// soak sends a mix of token, refresh, health, flood (rate-limited and then
// blocked) and bad requests from many source addresses in 127.0.0.0/8, and
// reports requests sent, responses by status, malformed answers, lost
// requests, p50/p99 latency and the server's heap and RSS. compare sends
// POST /token to the handler and to a bare net/http handler writing the
// same headers and an answer of the same size, in alternating rounds with
// the same generator, and reports both throughputs and their ratio.
//
// Where taskset exists and there are at least two CPUs, the server runs in
// a child process pinned to CPU 0 and the generator on CPU 1.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
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
		mode        = flag.String("mode", "soak", "soak, compare or both")
		duration    = flag.Duration("duration", 60*time.Second, "measured run time (per side, for compare)")
		warmup      = flag.Duration("warmup", bench.SessionTTL+2*time.Second, "soak traffic before the start memory figures")
		concurrency = flag.Int("concurrency", 64, "workers, each with one connection at a time")
		rounds      = flag.Int("rounds", 4, "compare: alternating rounds per side")
		pin         = flag.Bool("pin", true, "run the server in a child pinned to CPU 0 and the generator on CPU 1, where possible")
		serve       = flag.String("serve", "", "internal: serve with these options (soak or compare) until stdin closes")
	)
	flag.Parse()
	if *serve != "" {
		if err := serveChild(*serve); err != nil {
			fmt.Fprintln(os.Stderr, "load server:", err)
			os.Exit(1)
		}
		return
	}
	if *duration <= 0 || *duration > time.Hour || *concurrency < 1 || *concurrency > 4096 {
		fmt.Fprintln(os.Stderr, "load: -duration must be in (0, 1h] and -concurrency in 1..4096")
		os.Exit(2)
	}
	ok := true
	if *mode == "soak" || *mode == "both" {
		ok = runSoak(*duration, *warmup, *concurrency, *pin) && ok
	}
	if *mode == "compare" || *mode == "both" {
		ok = runCompare(*duration, *rounds, *concurrency, *pin) && ok
	}
	if !ok {
		os.Exit(1)
	}
}

// server is where the load server runs: a pinned child, or this process.
type server struct {
	addr string
	mem  func() (bench.Mem, error)
	stop func()
}

func startServer(opts string, pin bool) (server, error) {
	taskset, err := exec.LookPath("taskset")
	if pin && err == nil && runtime.NumCPU() >= 2 {
		return startChild(taskset, opts)
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

// startChild runs this program as the server under taskset -c 0, and pins
// this process (every thread) to CPU 1.
func startChild(taskset, opts string) (server, error) {
	self, err := os.Executable()
	if err != nil {
		return server{}, err
	}
	cmd := exec.Command(taskset, "-c", "0", self, "-serve", opts)
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
	out, err := exec.Command(taskset, "-a", "-p", "-c", "1", strconv.Itoa(os.Getpid())).CombinedOutput()
	if err != nil {
		return server{}, fmt.Errorf("taskset on the generator: %v: %s", err, out)
	}
	runtime.GOMAXPROCS(1)
	fmt.Printf("server: child pid %d pinned to CPU 0 (taskset -c 0, GOMAXPROCS 1); generator pinned to CPU 1 (GOMAXPROCS 1)\n", cmd.Process.Pid)
	return server{
		addr: addr,
		mem:  func() (bench.Mem, error) { return bench.RemoteMem(addr) },
		stop: func() {
			_ = stdin.Close() // the child shuts down when its stdin closes
			_ = cmd.Wait()
		},
	}, nil
}

// serveChild is the child's side: serve, print the address, and stop when
// the parent closes stdin (or dies).
func serveChild(opts string) error {
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

func runCompare(d time.Duration, rounds, concurrency int, pin bool) bool {
	srv, err := startServer("compare", pin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		return false
	}
	defer srv.stop()
	fmt.Printf("compare: %d workers with keep-alive connections, %v per side in %d alternating rounds\n", concurrency, d, rounds)
	rep := bench.RunCompare(bench.CompareConfig{Server: srv.addr, Duration: d, Rounds: rounds, Concurrency: concurrency})
	rep.Print(os.Stdout)
	return rep.Handler.Lost == 0 && rep.Bare.Lost == 0 && rep.Handler.Failed == 0 && rep.Bare.Failed == 0
}

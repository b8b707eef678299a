package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/realtimeauth/realtimeauth"
)

// The handler's default allowances (docs/limits.md), which the attacks
// run against: new sessions and mints per client, the share of one IPv6
// /48, live sessions per client.
const (
	defaultNewSessions   = 10 // per minute per client
	defaultMints         = 30 // per minute per client
	defaultPrefixShare   = 16 // one /48 counts as this many clients
	defaultClientCap     = 10 // live sessions per client
	limitWindow          = time.Minute
	attackRefreshEvery   = time.Second // the attacks' minimum refresh interval (default 10s), so that a short run refreshes
	legitimateTokenEvery = 10 * time.Second
	legitimateRefresh    = 3 * time.Second // at most; a short run refreshes sooner
	slowBodyTrickle      = 2 * time.Second // at most; a short run trickles faster
)

// MostAdmitted is the most admissions a limit of n per window allows in
// any stretch of time of length d (docs/limits.md): M(n) = max(n+1,
// floor(5n/4)) in any window's length, and (k-1)·n + M(n) in k windows'.
func MostAdmitted(n int, window, d time.Duration) int {
	m := max(n+1, 5*n/4)
	k := max(int(math.Ceil(float64(d)/float64(window))), 1)
	return (k-1)*n + m
}

// AttackConfig sets up an attack run. Every attack runs against a fresh
// handler on 127.0.0.1, with a legitimate client beside it, and stops by
// itself after Duration or its request budget.
type AttackConfig struct {
	Duration time.Duration // each attack's length; 1s..10m
	// Only lists the attacks to run by name (Attacks); empty runs all.
	Only []string
	// Addresses is how many source addresses the many-addresses attack
	// uses (127.10.0.0 onwards); default 2,000, at most 65,000.
	Addresses int
	// Prefixes is how many /64s of one /48 the prefix attack uses;
	// default 65,536.
	Prefixes int
	// Concurrency is each attack's number of workers; default 32.
	Concurrency int
}

// AttackResult is what one attack achieved.
type AttackResult struct {
	Name          string
	What          string // the attack, in a line
	Elapsed       time.Duration
	Requests      uint64         // the attacker's, answered
	Lost          uint64         // the attacker's, without an answer
	Statuses      map[int]uint64 // the attacker's answers by status
	Mints         int64          // upstream mints, the legitimate client's included
	LegitMints    int64          // of which the legitimate client's
	Formula       int            // the most mints the attacker may cause (docs/limits.md)
	FormulaText   string
	LegitRequests uint64
	LegitOK       uint64
	LegitFailures []string
	LogLines      int64 // log lines written during the attack
	LogBytes      int64
	LegitLogLines int64 // of which about the legitimate client
	LogFormula    int64 // the most lines the attack may cause, -1 when the attack does not bound it
	Live          int   // live sessions at the end
	MemBefore     Mem
	MemAfter      Mem
}

// LegitRate is the legitimate client's success rate, 0..1.
func (r AttackResult) LegitRate() float64 {
	if r.LegitRequests == 0 {
		return 0
	}
	return float64(r.LegitOK) / float64(r.LegitRequests)
}

// AttackerMints is the mints the attack caused.
func (r AttackResult) AttackerMints() int64 { return r.Mints - r.LegitMints }

// OK reports whether the attack stayed within its formulas and the
// legitimate client got everything it asked for.
func (r AttackResult) OK() bool {
	return r.LegitRequests > 0 && r.LegitOK == r.LegitRequests && r.AttackerMints() <= int64(r.Formula) &&
		(r.LogFormula < 0 || r.LogLines-r.LegitLogLines <= r.LogFormula)
}

// attack is one scenario of issue 10.
type attack struct {
	name, what string
	opts       func(cfg AttackConfig) []realtimeauth.Option
	run        func(ctx context.Context, rig *attackRig, cfg AttackConfig)
	// formula is the most mints the attacker may cause in d, and how.
	formula func(cfg AttackConfig, d time.Duration) (int, string)
	// logFormula is the most log lines the attacker may cause in d, -1
	// when the attack is not about logs.
	logFormula func(cfg AttackConfig, d time.Duration) int64
}

// Attacks names the attacks in the order they run.
func Attacks() []string {
	var out []string
	for _, a := range attacks {
		out = append(out, a.name)
	}
	return out
}

// RunAttacks runs the configured attacks one after the other.
func RunAttacks(cfg AttackConfig) ([]AttackResult, error) {
	if cfg.Duration < time.Second || cfg.Duration > 10*time.Minute {
		return nil, errors.New("bench: attack duration must be in 1s..10m")
	}
	if cfg.Addresses == 0 {
		cfg.Addresses = 2000
	}
	if cfg.Prefixes == 0 {
		cfg.Prefixes = 1 << 16
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 32
	}
	if cfg.Addresses < 1 || cfg.Addresses > 65000 || cfg.Prefixes < 1 || cfg.Prefixes > 1<<16 || cfg.Concurrency < 1 || cfg.Concurrency > 1024 {
		return nil, errors.New("bench: attack addresses must be in 1..65000, prefixes in 1..65536, concurrency in 1..1024")
	}
	want := map[string]bool{}
	for _, n := range cfg.Only {
		want[n] = true
	}
	known := map[string]bool{}
	for _, a := range attacks {
		known[a.name] = true
	}
	for n := range want {
		if !known[n] {
			return nil, fmt.Errorf("bench: no attack named %q (have %s)", n, strings.Join(Attacks(), ", "))
		}
	}
	var out []AttackResult
	for _, a := range attacks {
		if len(want) > 0 && !want[a.name] {
			continue
		}
		r, err := runAttack(a, cfg)
		if err != nil {
			return out, fmt.Errorf("%s: %w", a.name, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// lineCounter is a log sink that counts lines, and those about the
// legitimate client.
type lineCounter struct {
	lines, bytes, legit atomic.Int64
	legitIP             []byte
}

func (l *lineCounter) Write(p []byte) (int, error) {
	l.lines.Add(int64(bytes.Count(p, []byte{'\n'})))
	l.bytes.Add(int64(len(p)))
	if bytes.Contains(p, l.legitIP) {
		l.legit.Add(1)
	}
	return len(p), nil
}

// attackRig is one attack's handler, fake upstream and legitimate client.
type attackRig struct {
	addr     string // the handler's host:port, on 127.0.0.1
	h        *realtimeauth.Handler
	mints    atomic.Int64
	legitMin atomic.Int64
	legit    netip.Addr
	tally    *tally // the attacker's requests, merged by the workers
	mu       sync.Mutex
}

func (r *attackRig) merge(t *tally) {
	r.mu.Lock()
	r.tally.merge(t)
	r.mu.Unlock()
}

// legitimateAddr is the legitimate client's source address: in no
// attacker's range.
var legitimateAddr = netip.MustParseAddr("127.200.0.1")

// runAttack runs one attack against a fresh handler, its fake upstream
// and the legitimate client beside it, and measures what it achieved.
func runAttack(a attack, cfg AttackConfig) (AttackResult, error) {
	res := AttackResult{Name: a.name, What: a.what, LogFormula: -1}
	rig := &attackRig{legit: legitimateAddr, tally: newTally()}
	upstream := newAttackUpstream(rig)
	defer upstream.Close()
	logs := &lineCounter{legitIP: []byte("client_ip=" + legitimateAddr.String())}
	h, err := newAttackHandler(a, cfg, rig, slog.New(slog.NewTextHandler(logs, nil)), upstream.URL)
	if err != nil {
		return res, err
	}
	defer h.Close()
	rig.h = h
	stop, err := serveAttack(rig)
	if err != nil {
		return res, err
	}
	defer stop()
	measureAttack(a, cfg, rig, logs, &res)
	return res, nil
}

// newAttackUpstream is the fake upstream: OpenAI's client_secrets,
// counting mints, on loopback. The legitimate client's mints are told
// apart by the handler's events (their ClientIP).
func newAttackUpstream(rig *attackRig) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		rig.mints.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"value":"ek_attack_%d","expires_at":%d}`, rig.mints.Load(), time.Now().Add(time.Hour).Unix())
	}))
}

// newAttackHandler is the attack's handler, minting at upstreamURL and
// logging to logger, with the attack's own options after every attack's.
func newAttackHandler(a attack, cfg AttackConfig, rig *attackRig, logger *slog.Logger, upstreamURL string) (*realtimeauth.Handler, error) {
	minter, err := realtimeauth.NewOpenAIMinter("sk-attack-bench-key", realtimeauth.OpenAIConfig{
		BaseURL:    upstreamURL,
		MaxRetries: -1,
		Logger:     logger,
	})
	if err != nil {
		return nil, err
	}
	opts := append(attackOptions(), realtimeauth.WithLogger(logger),
		realtimeauth.WithEventHook(func(e realtimeauth.Event) {
			if e.ClientIP == legitimateAddr.String() && (e.Name == realtimeauth.EventTokenIssued || e.Name == realtimeauth.EventTokenRefreshed) {
				rig.legitMin.Add(1)
			}
		}))
	if a.opts != nil {
		opts = append(opts, a.opts(cfg)...)
	}
	return realtimeauth.New(minter, opts...)
}

// serveAttack serves the rig's handler on loopback, sets rig.addr, and
// returns the function that shuts the server down.
func serveAttack(rig *attackRig) (stop func(), err error) {
	mux := http.NewServeMux()
	mux.Handle(BasePath+"/", rig.h)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	if ap, err := netip.ParseAddrPort(ln.Addr().String()); err != nil || !ap.Addr().IsLoopback() {
		_ = ln.Close()
		return nil, errors.New("bench: the attack target must be on loopback")
	}
	rig.addr = ln.Addr().String()
	srv := NewHTTPServer(mux)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}

// measureAttack runs the attack and the legitimate client for
// cfg.Duration, and records in res what they caused.
func measureAttack(a attack, cfg AttackConfig, rig *attackRig, logs *lineCounter, res *AttackResult) {
	res.MemBefore = ReadMem()
	lines0, bytes0, legit0 := logs.lines.Load(), logs.bytes.Load(), logs.legit.Load()
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Duration)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	var legit legitimateClient
	wg.Go(func() {
		legit.run(ctx, rig, max(attackRefreshEvery+100*time.Millisecond, min(legitimateRefresh, cfg.Duration/3)))
	})
	a.run(ctx, rig, cfg)
	cancel()
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.MemAfter = ReadMem()
	res.Live = rig.h.Stats().ActiveSessions

	res.Mints, res.LegitMints = rig.mints.Load(), rig.legitMin.Load()
	res.Formula, res.FormulaText = a.formula(cfg, res.Elapsed)
	if a.logFormula != nil {
		res.LogFormula = a.logFormula(cfg, res.Elapsed)
	}
	res.LogLines, res.LogBytes, res.LegitLogLines = logs.lines.Load()-lines0, logs.bytes.Load()-bytes0, logs.legit.Load()-legit0
	res.LegitRequests, res.LegitOK, res.LegitFailures = legit.requests, legit.ok, legit.failures
	res.Requests, res.Lost = rig.tally.sent-rig.tally.lost, rig.tally.lost
	res.Statuses = map[int]uint64{}
	for _, m := range rig.tally.byKind {
		for s, n := range m {
			res.Statuses[s] += n
		}
	}
}

// attackOptions are the handler's options for every attack: the defaults,
// named, and a refresh interval of attackRefreshEvery so that a short run
// refreshes.
func attackOptions() []realtimeauth.Option {
	return append(defaultLimitOptions(),
		realtimeauth.WithAllowedOrigins(Origin),
		realtimeauth.WithLimits(realtimeauth.Limits{
			MaxRefreshes:       120,
			MinRefreshInterval: attackRefreshEvery,
		}), // the default 120 refreshes
	)
}

// legitimateClient is a browser beside the attack: a new session every
// legitimateTokenEvery, its latest session refreshed every refreshEvery
// (legitimateRefresh, or sooner in a short run), all within its
// allowances. It counts every answer.
type legitimateClient struct {
	requests, ok uint64
	failures     []string
}

func (l *legitimateClient) run(ctx context.Context, rig *attackRig, refreshEvery time.Duration) {
	t := newTally()
	c := &client{server: rig.addr, t: t}
	defer c.close()
	do := func(req []byte, kind requestKind) (response, bool) {
		l.requests++
		r, ok := c.send(kind, rig.legit, req, false)
		c.close() // a browser's request may come on any connection
		if ok && r.status == 200 {
			l.ok++
			return r, true
		}
		if len(l.failures) < 5 {
			l.failures = append(l.failures, fmt.Sprintf("%s: status %d: %.120s", kind, r.status, r.body))
		}
		return r, false
	}
	var session string
	nextToken, nextRefresh := time.Now(), time.Now().Add(refreshEvery)
	for {
		now := time.Now()
		switch {
		case !now.Before(nextToken):
			if r, ok := do(reqToken, kindToken); ok {
				var v struct {
					SessionID string `json:"sessionId"`
				}
				if json.Unmarshal(r.body, &v) == nil {
					session = v.SessionID
				}
			}
			// The next refresh counts from the answer, which comes after the
			// handler's decision: however slow this one was, the next one
			// cannot come too soon.
			nextToken, nextRefresh = now.Add(legitimateTokenEvery), time.Now().Add(refreshEvery)
		case !now.Before(nextRefresh) && session != "":
			do(refreshRequest(session), kindRefresh)
			nextRefresh = time.Now().Add(refreshEvery)
		}
		next := nextRefresh
		if nextToken.Before(next) {
			next = nextToken
		}
		wait := time.Until(next)
		select {
		case <-ctx.Done():
			return
		case <-time.After(max(wait, time.Millisecond)):
		}
	}
}

// workers runs n copies of f until ctx ends, each with its own tally,
// merged into the rig's.
func workers(ctx context.Context, rig *attackRig, n int, f func(ctx context.Context, c *client, w int)) {
	var wg sync.WaitGroup
	for w := range n {
		wg.Go(func() {
			t := newTally()
			c := &client{server: rig.addr, t: t}
			f(ctx, c, w)
			c.close()
			rig.merge(t)
		})
	}
	wg.Wait()
}

// PrintAttacks writes one block per attack.
func PrintAttacks(w io.Writer, rs []AttackResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "attack\trequests\tupstream mints (attacker)\tformula\tlegit OK\tlog lines (attacker)\tlive sessions\theap before→after\tRSS after\tverdict")
	for _, r := range rs {
		logs := fmt.Sprintf("%d (%d)", r.LogLines, r.LogLines-r.LegitLogLines)
		if r.LogFormula >= 0 {
			logs += fmt.Sprintf(" ≤ %d", r.LogFormula)
		}
		verdict := "ok"
		if !r.OK() {
			verdict = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d (%d)\t≤ %d\t%d/%d (%.0f%%)\t%s\t%d\t%.1f→%.1f MiB\t%.1f MiB\t%s\n", r.Name, r.Requests, r.Mints,
			r.AttackerMints(), r.Formula, r.LegitOK, r.LegitRequests, 100*r.LegitRate(), logs, r.Live,
			mib(r.MemBefore.HeapAlloc), mib(r.MemAfter.HeapAlloc), mib(r.MemAfter.RSS), verdict)
	}
	_ = tw.Flush()
	for _, r := range rs {
		statuses := make([]int, 0, len(r.Statuses))
		for s := range r.Statuses {
			statuses = append(statuses, s)
		}
		sort.Ints(statuses)
		var parts []string
		for _, s := range statuses {
			parts = append(parts, fmt.Sprintf("%d: %d", s, r.Statuses[s]))
		}
		fmt.Fprintf(w, "%s (%v): %s\n  attacker answers %s; lost %d; formula %s\n", r.Name, r.Elapsed.Round(time.Millisecond), r.What,
			strings.Join(parts, ", "), r.Lost, r.FormulaText)
		for _, f := range r.LegitFailures {
			fmt.Fprintf(w, "  legitimate client failed: %s\n", f)
		}
	}
}

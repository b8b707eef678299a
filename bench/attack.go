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

var attacks = []attack{
	{
		name: "slow-body",
		what: "token and refresh requests from one address whose bodies trickle in over 2 s (a third of the run if shorter), under an upstream budget of 2/s (burst 20)",
		opts: func(AttackConfig) []realtimeauth.Option {
			return []realtimeauth.Option{realtimeauth.WithUpstreamRate(2, 20)}
		},
		run: runSlowBody,
		formula: func(_ AttackConfig, d time.Duration) (int, string) {
			perClient := MostAdmitted(defaultMints, limitWindow, d)
			budget := 20 + int(2*d.Seconds())
			return min(perClient, budget), fmt.Sprintf("min(mints/client %d, budget 20+2/s·%v = %d)", perClient, d.Round(100*time.Millisecond), budget)
		},
	},
	{
		name: "refresh-loop",
		what: "one address opens sessions at its limit and refreshes every one at the minimum interval (1 s here)",
		run:  runRefreshLoop,
		formula: func(_ AttackConfig, d time.Duration) (int, string) {
			n := MostAdmitted(defaultMints, limitWindow, d)
			return n, fmt.Sprintf("mints/client M(30/min) over %v = %d", d.Round(100*time.Millisecond), n)
		},
	},
	{
		name: "one-address",
		what: "token requests as fast as they are answered, from one address",
		run:  runOneAddress,
		formula: func(_ AttackConfig, d time.Duration) (int, string) {
			n := MostAdmitted(defaultNewSessions, limitWindow, d)
			return n, fmt.Sprintf("new sessions/client M(10/min) over %v = %d", d.Round(100*time.Millisecond), n)
		},
	},
	{
		name: "many-addresses",
		what: "12 token requests from each of many addresses (127.10.x.y) in turn, over and over, into a store capped at half of what one turn asks",
		opts: func(cfg AttackConfig) []realtimeauth.Option {
			return maxSessionsOption(cfg.Addresses * defaultNewSessions / 2)
		},
		run: runManyAddresses,
		formula: func(cfg AttackConfig, d time.Duration) (int, string) {
			n := cfg.Addresses * MostAdmitted(defaultNewSessions, limitWindow, d)
			return n, fmt.Sprintf("%d addresses × M(10/min) over %v = %d", cfg.Addresses, d.Round(100*time.Millisecond), n)
		},
	},
	{
		name: "one-48",
		what: "a token request from each /64 of one IPv6 /48 (2001:db8:48::/48) in turn, through a trusted proxy's X-Forwarded-For",
		opts: func(AttackConfig) []realtimeauth.Option {
			return []realtimeauth.Option{realtimeauth.WithTrustedProxies("127.0.0.1/32")}
		},
		run: runOnePrefix,
		formula: func(cfg AttackConfig, d time.Duration) (int, string) {
			perPrefix := MostAdmitted(defaultPrefixShare*defaultNewSessions, limitWindow, d)
			each := cfg.Prefixes * MostAdmitted(defaultNewSessions, limitWindow, d)
			return min(perPrefix, each), fmt.Sprintf("new sessions/48 M(16×10/min) over %v = %d", d.Round(100*time.Millisecond), perPrefix)
		},
	},
	{
		name: "refusal-flood",
		what: "refusals that are not strikes (foreign origin, over the rate limit, refresh too soon) from one address, as fast as answered",
		run:  runRefusalFlood,
		formula: func(_ AttackConfig, d time.Duration) (int, string) {
			n := MostAdmitted(defaultMints, limitWindow, d)
			return n, fmt.Sprintf("mints/client M(30/min) over %v = %d", d.Round(100*time.Millisecond), n)
		},
		logFormula: func(_ AttackConfig, d time.Duration) int64 {
			// Per event kind and client, 10 lines a minute and one
			// "suppressed" line for the rest; five kinds here
			// (origin_rejected, rate_limited, refresh_too_soon,
			// token_issued, token_refreshed), in every minute begun and
			// the one after, where the last summary may fall.
			minutes := int64(math.Ceil(d.Minutes())) + 1
			return 5 * 11 * minutes
		},
	},
	{
		name: "health-flood",
		what: "GET /health as fast as answered, from many connections",
		run:  runHealthFlood,
		formula: func(AttackConfig, time.Duration) (int, string) {
			return 0, "health mints nothing: 0"
		},
		logFormula: func(AttackConfig, time.Duration) int64 { return 0 },
	},
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

func runAttack(a attack, cfg AttackConfig) (AttackResult, error) {
	res := AttackResult{Name: a.name, What: a.what, LogFormula: -1}
	rig := &attackRig{legit: legitimateAddr, tally: newTally()}
	// The fake upstream: OpenAI's client_secrets, counting mints, on
	// loopback. The legitimate client's mints are told apart by the
	// handler's events (their ClientIP).
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		rig.mints.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"value":"ek_attack_%d","expires_at":%d}`, rig.mints.Load(), time.Now().Add(time.Hour).Unix())
	}))
	defer upstream.Close()
	logs := &lineCounter{legitIP: []byte("client_ip=" + legitimateAddr.String())}
	logger := slog.New(slog.NewTextHandler(logs, nil))
	minter, err := realtimeauth.NewOpenAIMinter("sk-attack-bench-key", realtimeauth.WithBaseURL(upstream.URL),
		realtimeauth.WithMaxRetries(0), realtimeauth.WithMinterLogger(logger))
	if err != nil {
		return res, err
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
	h, err := realtimeauth.New(minter, opts...)
	if err != nil {
		return res, err
	}
	defer h.Close()
	rig.h = h
	mux := http.NewServeMux()
	mux.Handle(BasePath+"/", h)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return res, err
	}
	if ap, err := netip.ParseAddrPort(ln.Addr().String()); err != nil || !ap.Addr().IsLoopback() {
		_ = ln.Close()
		return res, errors.New("bench: the attack target must be on loopback")
	}
	rig.addr = ln.Addr().String()
	srv := NewHTTPServer(mux)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}()

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
	res.Live = h.Stats().ActiveSessions

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
	return res, nil
}

// attackOptions are the handler's options for every attack: the defaults,
// named, and a refresh interval of attackRefreshEvery so that a short run
// refreshes.
func attackOptions() []realtimeauth.Option {
	return append(defaultLimitOptions(),
		realtimeauth.WithAllowedOrigins(Origin),
		realtimeauth.WithRefreshPolicy(120, attackRefreshEvery), // the default 120 refreshes
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

var attackerAddr = netip.MustParseAddr("127.50.0.1")

// sessionOf returns the sessionId of a token answer, or "".
func sessionOf(r response) string {
	var v struct {
		SessionID string `json:"sessionId"`
	}
	_ = json.Unmarshal(r.body, &v)
	return v.SessionID
}

// runSlowBody: half the workers send token requests, half refresh
// requests of a session opened first, every body trickled in a byte at a
// time over about 2 s.
func runSlowBody(ctx context.Context, rig *attackRig, cfg AttackConfig) {
	c := &client{server: rig.addr, t: newTally()}
	r, _ := c.send(kindToken, attackerAddr, reqToken, false)
	c.close()
	rig.merge(c.t)
	session := sessionOf(r)
	workers(ctx, rig, cfg.Concurrency, func(ctx context.Context, c *client, w int) {
		body := `{` + strings.Repeat(" ", 19) + `}`
		if w%2 == 1 && session != "" {
			body = `{"sessionId":"` + session + `"}`
		}
		for ctx.Err() == nil {
			path := BasePath + "/token"
			if w%2 == 1 && session != "" {
				path = BasePath + "/refresh-token"
			}
			slowRequest(ctx, c, path, body, min(slowBodyTrickle, cfg.Duration/3))
		}
	})
}

// slowRequest sends headers at once and the body a byte at a time over
// about d, then reads the answer, on a connection of its own.
func slowRequest(ctx context.Context, c *client, path, body string, d time.Duration) {
	c.t.sent++
	conn, err := dialFrom(c.server, attackerAddr)
	if err != nil {
		c.t.lost++
		return
	}
	defer conn.Close()
	head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: load.test\r\nOrigin: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", path, Origin, len(body))
	_ = conn.c.SetDeadline(time.Now().Add(d + requestTimeout))
	if _, err := io.WriteString(conn.c, head); err != nil {
		c.t.lost++
		return
	}
	step := d / time.Duration(len(body))
	for i := range len(body) {
		select {
		case <-ctx.Done():
			c.t.sent-- // not an answer: the attack is over
			return
		case <-time.After(step):
		}
		if _, err := conn.c.Write([]byte{body[i]}); err != nil {
			c.t.lost++
			return
		}
	}
	var buf []byte
	r, err := conn.do(nil, requestTimeout, &buf)
	if err != nil {
		c.t.lost++
		return
	}
	c.t.count(kindToken, r.status)
}

// runRefreshLoop: one address opens sessions as fast as its limit allows
// (waiting out each Retry-After, so it earns no strikes) and refreshes
// every one of them as soon as the minimum interval allows, over and over:
// the most mints one client could buy before every mint was charged.
func runRefreshLoop(ctx context.Context, rig *attackRig, _ AttackConfig) {
	workers(ctx, rig, 1, func(ctx context.Context, c *client, _ int) {
		type session struct {
			id  string
			due time.Time
		}
		var sessions []session
		nextToken := time.Now()
		for ctx.Err() == nil {
			now := time.Now()
			if !now.Before(nextToken) {
				r, ok := c.send(kindToken, attackerAddr, reqToken, false)
				switch {
				case ok && r.status == 200:
					sessions = append(sessions, session{sessionOf(r), now.Add(attackRefreshEvery)})
				case ok && r.status == 429:
					nextToken = now.Add(retryAfterOf(r))
				default:
					nextToken = now.Add(time.Second)
				}
			}
			next := nextToken
			kept := sessions[:0]
			for _, s := range sessions {
				if !now.Before(s.due) {
					r, ok := c.send(kindRefresh, attackerAddr, refreshRequest(s.id), false)
					switch {
					case ok && r.status == 429:
						s.due = now.Add(retryAfterOf(r))
					case ok && r.status != 200:
						continue // evicted, expired or used up: forget it
					default:
						s.due = now.Add(attackRefreshEvery)
					}
				}
				kept = append(kept, s)
				if s.due.Before(next) {
					next = s.due
				}
			}
			sessions = kept
			pause(ctx, min(max(time.Until(next), time.Millisecond), 50*time.Millisecond))
		}
	})
}

// retryAfterOf is an answer's Retry-After, 1s when it has none.
func retryAfterOf(r response) time.Duration {
	var s int
	if _, err := fmt.Sscan(r.retryAfter, &s); err != nil || s < 1 {
		s = 1
	}
	return time.Duration(s) * time.Second
}

func pause(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// runOneAddress: token requests as fast as answered, from one address.
func runOneAddress(ctx context.Context, rig *attackRig, cfg AttackConfig) {
	workers(ctx, rig, cfg.Concurrency, func(ctx context.Context, c *client, _ int) {
		for ctx.Err() == nil {
			c.send(kindFlood, attackerAddr, reqToken, false)
		}
	})
}

// runManyAddresses: 12 token requests from each of cfg.Addresses source
// addresses, 127.10.0.0 onwards, and again from the first when all have
// had their turn, until the time is up: the store stays full while the
// legitimate client arrives.
func runManyAddresses(ctx context.Context, rig *attackRig, cfg AttackConfig) {
	var next atomic.Int64
	workers(ctx, rig, cfg.Concurrency, func(ctx context.Context, c *client, _ int) {
		for ctx.Err() == nil {
			i := (next.Add(1) - 1) % int64(cfg.Addresses)
			src := netip.AddrFrom4([4]byte{127, 10, byte(i >> 8), byte(i)})
			for range defaultNewSessions + 2 {
				c.send(kindFlood, src, reqToken, false)
			}
			c.close()
		}
	})
}

// runOnePrefix: one token request from each of cfg.Prefixes /64s of
// 2001:db8:48::/48 in turn (again from the first when all have had their
// turn, until the time is up), all from the trusted proxy 127.0.0.1 with
// the /64's address in X-Forwarded-For.
func runOnePrefix(ctx context.Context, rig *attackRig, cfg AttackConfig) {
	var next atomic.Int64
	proxy := netip.MustParseAddr("127.0.0.1")
	workers(ctx, rig, cfg.Concurrency, func(ctx context.Context, c *client, _ int) {
		for ctx.Err() == nil {
			i := (next.Add(1) - 1) % int64(cfg.Prefixes)
			xff := fmt.Sprintf("2001:db8:48:%x::1", i)
			c.send(kindFlood, proxy, buildRequest("POST", BasePath+"/token", [][2]string{hdrOrigin, {"X-Forwarded-For", xff}}, ""), false)
		}
	})
}

// runRefusalFlood: from one address, in turn: a token request with a
// foreign origin, one over the rate limit (after the first ten), and a
// refresh too soon of its own session.
func runRefusalFlood(ctx context.Context, rig *attackRig, cfg AttackConfig) {
	foreign := buildRequest("POST", BasePath+"/token", [][2]string{{"Origin", "https://evil.example"}}, "")
	var session atomic.Value
	session.Store("")
	workers(ctx, rig, min(cfg.Concurrency, 8), func(ctx context.Context, c *client, w int) {
		for i := 0; ctx.Err() == nil; i++ {
			switch (i + w) % 3 {
			case 0:
				c.send(kindBadOrigin, attackerAddr, foreign, false)
			case 1:
				if r, ok := c.send(kindFlood, attackerAddr, reqToken, false); ok && r.status == 200 {
					session.Store(sessionOf(r))
				}
			default:
				if id := session.Load().(string); id != "" {
					c.send(kindRefresh, attackerAddr, refreshRequest(id), false)
				}
			}
		}
	})
}

// runHealthFlood: GET /health as fast as answered, from 127.60.0.x.
func runHealthFlood(ctx context.Context, rig *attackRig, cfg AttackConfig) {
	workers(ctx, rig, cfg.Concurrency, func(ctx context.Context, c *client, w int) {
		src := netip.AddrFrom4([4]byte{127, 60, 0, byte(w%250) + 1})
		for ctx.Err() == nil {
			c.send(kindHealth, src, reqHealth, false)
		}
	})
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

// count records an answer of kind k with status.
func (t *tally) count(k requestKind, status int) {
	m := t.byKind[k]
	if m == nil {
		m = make(map[int]uint64)
		t.byKind[k] = m
	}
	m[status]++
}

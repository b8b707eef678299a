package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

// histogram counts latencies in buckets of about 3% width, from 1 µs to
// beyond a minute, in fixed memory.
type histogram struct {
	counts [64 + 40*32]uint64
	n      uint64
}

func bucketOf(d time.Duration) int {
	v := uint64(max(d.Microseconds(), 0))
	if v < 64 {
		return int(v)
	}
	shift := bits.Len64(v) - 6
	i := 64 + (shift-1)*32 + int(v>>shift) - 32
	return min(i, len(histogram{}.counts)-1)
}

func bucketFloor(i int) time.Duration {
	if i < 64 {
		return time.Duration(i) * time.Microsecond
	}
	shift := (i-64)/32 + 1
	m := uint64((i-64)%32 + 32)
	return time.Duration(m<<shift) * time.Microsecond
}

func (h *histogram) add(d time.Duration) { h.counts[bucketOf(d)]++; h.n++ }

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
}

// quantile returns the lower bound of the bucket holding quantile q.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	target := uint64(q*float64(h.n-1)) + 1
	var seen uint64
	for i, c := range h.counts {
		if seen += c; seen >= target {
			return bucketFloor(i)
		}
	}
	return bucketFloor(len(h.counts) - 1)
}

// tally is one worker's counts, merged at the end.
type tally struct {
	sent, lost, malformed, unexpected uint64
	byKind                            map[requestKind]map[int]uint64
	lat                               histogram
	examples                          []string // first few problems, for the report
}

func newTally() *tally { return &tally{byKind: make(map[requestKind]map[int]uint64)} }

func (t *tally) problem(s string) {
	if len(t.examples) < 5 {
		t.examples = append(t.examples, s)
	}
}

func (t *tally) merge(o *tally) {
	t.sent += o.sent
	t.lost += o.lost
	t.malformed += o.malformed
	t.unexpected += o.unexpected
	for k, m := range o.byKind {
		if t.byKind[k] == nil {
			t.byKind[k] = make(map[int]uint64)
		}
		for s, n := range m {
			t.byKind[k][s] += n
		}
	}
	t.lat.merge(&o.lat)
	for _, e := range o.examples {
		t.problem(e)
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

// client is one worker's connection and buffers.
type client struct {
	server string
	conn   *rawConn
	src    netip.Addr
	body   []byte
	t      *tally
}

const requestTimeout = 10 * time.Second

// send runs one request of kind k on the client's connection (dialling
// from src first if needed) and checks the answer. It returns the answer,
// or ok=false when the request was lost.
func (c *client) send(k requestKind, src netip.Addr, req []byte, check bool) (response, bool) {
	if c.conn != nil && c.src != src {
		c.conn.Close()
		c.conn = nil
	}
	c.t.sent++
	if c.conn == nil {
		conn, err := dialFrom(c.server, src)
		if err != nil {
			c.t.lost++
			c.t.problem(fmt.Sprintf("%s: dial from %s: %v", k, src, err))
			return response{}, false
		}
		c.conn, c.src = conn, src
	}
	start := time.Now()
	r, err := c.conn.do(req, requestTimeout, &c.body)
	if err != nil {
		c.t.lost++
		c.t.problem(fmt.Sprintf("%s from %s: %v", k, src, err))
		c.conn.Close()
		c.conn = nil
		return response{}, false
	}
	c.t.lat.add(time.Since(start))
	c.t.count(k, r.status)
	if check {
		if p := checkContract(k, r); p != "" {
			c.t.malformed++
			c.t.problem(fmt.Sprintf("%s: status %d: %s: %.200s", k, r.status, p, r.body))
		}
		ok := false
		for _, s := range expected[k] {
			ok = ok || s == r.status
		}
		if !ok {
			c.t.unexpected++
			c.t.problem(fmt.Sprintf("%s from %s: unexpected status %d: %.200s", k, src, r.status, r.body))
		}
	}
	if r.close {
		c.conn.Close()
		c.conn = nil
	}
	return r, true
}

func (c *client) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// addrPool hands out addresses of a prefix in turn.
type addrPool struct {
	base netip.Addr
	size uint32
	next atomic.Uint32
}

func newPool(prefix string) *addrPool {
	p := netip.MustParsePrefix(prefix)
	return &addrPool{base: p.Addr(), size: 1 << (32 - p.Bits())}
}

func (p *addrPool) take() netip.Addr {
	i := p.next.Add(1) % p.size
	if i == 0 { // skip the network address
		i = p.next.Add(1) % p.size
	}
	b := p.base.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) + i
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Source addresses: many well-behaved clients, a smaller set of flooders
// and a set of clients sending bad requests, so that blocks earned by the
// latter two never touch the first.
var (
	normalPool = "127.1.0.0/16"
	floodPool  = "127.2.0.0/22"
	badPool    = "127.3.0.0/20"
)

var (
	hdrOrigin   = [2]string{"Origin", Origin}
	hdrJSON     = [2]string{"Content-Type", "application/json"}
	reqToken    = buildRequest("POST", BasePath+"/token", [][2]string{hdrOrigin}, "")
	reqHealth   = buildRequest("GET", BasePath+"/health", nil, "")
	badRequests = []struct {
		kind requestKind
		req  []byte
	}{
		{kindBadJSON, buildRequest("POST", BasePath+"/token", [][2]string{hdrOrigin, hdrJSON}, `{"model":`)},
		{kindBadMethod, buildRequest("GET", BasePath+"/token", [][2]string{hdrOrigin}, "")},
		{kindBadSession, buildRequest("POST", BasePath+"/refresh-token", [][2]string{hdrOrigin, hdrJSON}, `{"sessionId":"nope"}`)},
		{kindUnknownSess, buildRequest("POST", BasePath+"/refresh-token", [][2]string{hdrOrigin, hdrJSON}, `{"sessionId":"00000000-0000-4000-8000-000000000000"}`)},
		{kindBadPath, buildRequest("POST", BasePath+"/nope", [][2]string{hdrOrigin}, "")},
		{kindBadMedia, buildRequest("POST", BasePath+"/token", [][2]string{hdrOrigin, {"Content-Type", "text/plain"}}, `{}`)},
		{kindBadOrigin, buildRequest("POST", BasePath+"/token", [][2]string{{"Origin", "https://evil.example"}}, "")},
	}
)

func refreshRequest(sid string) []byte {
	return buildRequest("POST", BasePath+"/refresh-token", [][2]string{hdrOrigin, hdrJSON}, `{"sessionId":"`+sid+`"}`)
}

// SoakConfig sets up a soak run.
type SoakConfig struct {
	Server      string        // host:port of a load server
	Duration    time.Duration // measured run, after Warmup
	Warmup      time.Duration // traffic before the start figures are read
	Concurrency int           // workers, each with one connection at a time
	Mem         func() (Mem, error)
	SampleEvery time.Duration // memory readings between start and end; default 10s
}

// SoakReport is the outcome of a soak run.
type SoakReport struct {
	Elapsed                           time.Duration
	Sent, Lost, Malformed, Unexpected uint64
	ByKind                            map[requestKind]map[int]uint64
	P50, P99                          time.Duration
	MemBefore, MemStart, MemEnd       Mem
	Samples                           []Mem // between MemStart and MemEnd
	Problems                          []string
}

// RunSoak drives the server with the soak mix until Warmup+Duration have
// passed, then waits for every worker's last request.
func RunSoak(cfg SoakConfig) (SoakReport, error) {
	var rep SoakReport
	var err error
	if rep.MemBefore, err = cfg.Mem(); err != nil {
		return rep, err
	}
	start := time.Now()
	stop := start.Add(cfg.Warmup + cfg.Duration)
	tallies, wait := startSoakWorkers(cfg, stop)
	if err := sampleSoakMem(cfg, stop, &rep); err != nil {
		return rep, err
	}
	wait()
	rep.Elapsed = time.Since(start)
	if rep.MemEnd, err = cfg.Mem(); err != nil {
		return rep, err
	}
	total := newTally()
	for _, t := range tallies {
		total.merge(t)
	}
	rep.Sent, rep.Lost, rep.Malformed, rep.Unexpected = total.sent, total.lost, total.malformed, total.unexpected
	rep.ByKind, rep.Problems = total.byKind, total.examples
	rep.P50, rep.P99 = total.lat.quantile(0.50), total.lat.quantile(0.99)
	return rep, nil
}

// startSoakWorkers starts cfg.Concurrency workers visiting with the soak
// mix until stop, and returns their tallies and the function that waits
// for them.
func startSoakWorkers(cfg SoakConfig, stop time.Time) (tallies []*tally, wait func()) {
	pools := struct{ normal, flood, bad *addrPool }{newPool(normalPool), newPool(floodPool), newPool(badPool)}
	tallies = make([]*tally, cfg.Concurrency)
	var wg sync.WaitGroup
	for w := range cfg.Concurrency {
		t := newTally()
		tallies[w] = t
		wg.Go(func() {
			c := &client{server: cfg.Server, t: t}
			defer c.close()
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			for time.Now().Before(stop) {
				switch n := rng.IntN(100); {
				case n < 70:
					normalVisit(c, pools.normal.take(), rng)
				case n < 85:
					floodVisit(c, pools.flood.take())
				default:
					badVisit(c, pools.bad.take(), rng)
				}
			}
		})
	}
	return tallies, wg.Wait
}

// sampleSoakMem takes the memory readings while the workers run: at the
// end of the warm-up (rep.MemStart), then every SampleEvery until stop
// (rep.Samples).
func sampleSoakMem(cfg SoakConfig, stop time.Time, rep *SoakReport) error {
	time.Sleep(cfg.Warmup)
	var err error
	if rep.MemStart, err = cfg.Mem(); err != nil {
		return err
	}
	every := cfg.SampleEvery
	if every <= 0 {
		every = 10 * time.Second
	}
	for next := time.Now().Add(every); next.Before(stop.Add(-every / 2)); next = next.Add(every) {
		time.Sleep(time.Until(next))
		m, err := cfg.Mem()
		if err != nil {
			return err
		}
		rep.Samples = append(rep.Samples, m)
	}
	return nil
}

// normalVisit is a well-behaved browser: a token, a few refreshes of its
// session, a health check.
func normalVisit(c *client, src netip.Addr, rng *rand.Rand) {
	r, ok := c.send(kindToken, src, reqToken, true)
	if ok && r.status == 200 {
		var v struct {
			SessionID string `json:"sessionId"`
		}
		if json.Unmarshal(r.body, &v) == nil && v.SessionID != "" {
			req := refreshRequest(v.SessionID)
			for range 1 + rng.IntN(4) {
				c.send(kindRefresh, src, req, true)
			}
		}
	}
	c.send(kindHealth, src, reqHealth, true)
	c.close()
}

// floodVisit asks for more tokens than the limit allows.
func floodVisit(c *client, src netip.Addr) {
	for range 15 {
		c.send(kindFlood, src, reqToken, true)
	}
	c.close()
}

// badVisit sends a few bad requests of different sorts.
func badVisit(c *client, src netip.Addr, rng *rand.Rand) {
	for range 4 {
		b := badRequests[rng.IntN(len(badRequests))]
		c.send(b.kind, src, b.req, true)
	}
	c.close()
}

// Print writes the report as text.
func (r SoakReport) Print(w io.Writer) {
	fmt.Fprintf(w, "soak: %v, %d requests sent (%.0f/s)\n", r.Elapsed.Round(time.Millisecond), r.Sent,
		float64(r.Sent)/r.Elapsed.Seconds())
	fmt.Fprintf(w, "lost %d, malformed %d, unexpected status %d\n", r.Lost, r.Malformed, r.Unexpected)
	fmt.Fprintf(w, "latency p50 %v, p99 %v\n", r.P50, r.P99)
	printByKind(w, r.ByKind)
	fmt.Fprintf(w, "server memory after GC   heap       RSS        goroutines\n")
	for _, m := range []struct {
		name string
		m    Mem
	}{{"before traffic", r.MemBefore}, {"start (after warm-up)", r.MemStart}} {
		fmt.Fprintf(w, "  %-22s %7.1f MiB  %7.1f MiB  %d\n", m.name, mib(m.m.HeapAlloc), mib(m.m.RSS), m.m.Goroutines)
	}
	for i, m := range r.Samples {
		fmt.Fprintf(w, "  %-22s %7.1f MiB  %7.1f MiB  %d\n", fmt.Sprintf("sample %d", i+1), mib(m.HeapAlloc), mib(m.RSS), m.Goroutines)
	}
	for _, m := range []struct {
		name string
		m    Mem
	}{{"end (traffic stopped)", r.MemEnd}} {
		fmt.Fprintf(w, "  %-22s %7.1f MiB  %7.1f MiB  %d\n", m.name, mib(m.m.HeapAlloc), mib(m.m.RSS), m.m.Goroutines)
	}
	for _, p := range r.Problems {
		fmt.Fprintf(w, "problem: %s\n", p)
	}
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

func printByKind(w io.Writer, by map[requestKind]map[int]uint64) {
	kinds := make([]string, 0, len(by))
	for k := range by {
		kinds = append(kinds, string(k))
	}
	sort.Strings(kinds)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "request\tresponses by status")
	for _, k := range kinds {
		m := by[requestKind(k)]
		statuses := make([]int, 0, len(m))
		for s := range m {
			statuses = append(statuses, s)
		}
		sort.Ints(statuses)
		var parts []string
		for _, s := range statuses {
			parts = append(parts, fmt.Sprintf("%d: %d", s, m[s]))
		}
		fmt.Fprintf(tw, "%s\t%s\n", k, strings.Join(parts, ", "))
	}
	_ = tw.Flush()
}

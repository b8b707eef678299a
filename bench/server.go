package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/pprof"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/realtimeauth/realtimeauth"
)

// Paths the load server serves.
const (
	BasePath  = "/api/voice-agent"
	BarePath  = "/bare/token"
	StatsPath = "/_stats"
	// LivePath answers the handler's live-session count, without the
	// garbage collection StatsPath forces.
	LivePath = "/_live"
	// Origin is the example server's default allowed origin.
	Origin = "http://localhost:4321"
)

// ZeroMinter answers at once with a fixed token, so that the load test
// measures the handler and not a minter. It keeps no state.
type ZeroMinter struct{}

// ZeroToken is the token ZeroMinter issues.
const ZeroToken = "ek_load_0123456789abcdef0123456789abcdef"

// Local reports true: ZeroMinter mints in-process, so the handler sets no
// deadline on its mints, as it does for NewDevMinter's (see realtimeauth.Minter).
func (ZeroMinter) Local() bool { return true }

// Mint implements realtimeauth.Minter.
func (ZeroMinter) Mint(ctx context.Context, req realtimeauth.MintRequest) (realtimeauth.Token, error) {
	if err := ctx.Err(); err != nil {
		return realtimeauth.Token{}, err
	}
	return realtimeauth.Token{Value: ZeroToken, ExpiresAt: time.Now().Add(req.TTL)}, nil
}

// SessionTTL is the soak's session (and token) lifetime: the shortest the
// handler accepts, so that the live session count reaches its steady state
// within a short run and a flat heap means no leak.
const SessionTTL = 10 * time.Second

// SoakOptions are the example server's handler options (examples/server,
// config.go, with its defaults: origin http://localhost:4321, 10 tokens a
// minute per client, 120 refreshes, 10 s upstream timeout, no trusted
// proxies, abuse blocking after 10 strikes in 10 minutes for 15 minutes),
// except that the token and session lifetimes are SessionTTL and refreshes
// have no minimum interval, so that a short run exercises refresh. The soak
// checks answers and memory, so it logs nothing.
func SoakOptions() []realtimeauth.Option {
	return append(exampleOptions(), realtimeauth.WithLogger(slog.New(slog.DiscardHandler)))
}

func exampleOptions() []realtimeauth.Option {
	return []realtimeauth.Option{
		realtimeauth.WithAllowedOrigins(Origin),
		realtimeauth.WithLimits(realtimeauth.Limits{
			Sessions:           realtimeauth.Rate{N: 10, Per: time.Minute},
			TokenTTL:           SessionTTL,
			SessionTTL:         SessionTTL,
			MaxRefreshes:       120,
			MinRefreshInterval: -1,
			UpstreamTimeout:    10 * time.Second,
		}),
		realtimeauth.WithTrustedProxies(),
		// and the default abuse guard, 10 strikes in 10 minutes block for
		// 15, as the example server's
	}
}

// CompareOptions are the example server's options as SoakOptions has them,
// with the handler's default logger (slog.Default, which the load server
// points at a file), and with the per-client limits out of reach of the
// comparison's 64 clients, so that every request is a 200 and the sessions
// accumulate to what SessionTTL holds live, as they do with many real
// clients.
func CompareOptions() []realtimeauth.Option {
	// 1023 is an allowance's largest limit: per 4ms, that is 255,750 per
	// second per client.
	return append(exampleOptions(), realtimeauth.WithLimits(realtimeauth.Limits{
		Sessions:             realtimeauth.Rate{N: 1023, Per: 4 * time.Millisecond},
		Mints:                realtimeauth.Rate{N: 1023, Per: 4 * time.Millisecond},
		MaxSessionsPerClient: 1_000_000,
	}))
}

// NewServerHandler returns the load server's routes: the realtimeauth
// handler built with opts under BasePath, the bare net/http handler at
// BarePath, and the server's memory figures at StatsPath.
func NewServerHandler(opts []realtimeauth.Option) (http.Handler, func(), error) {
	h, err := realtimeauth.New(ZeroMinter{}, opts...)
	if err != nil {
		return nil, nil, err
	}
	bare, err := newBareHandler(h)
	if err != nil {
		return nil, nil, err
	}
	mux := http.NewServeMux()
	mux.Handle(BasePath+"/", h)
	mux.Handle(BarePath, bare)
	mux.HandleFunc(StatsPath, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(ReadMem())
	})
	// The load server listens on loopback only; its profiles are for the
	// compare mode's -cpuprofile.
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc(LivePath, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(struct {
			Sessions int `json:"sessions"`
		}{h.Stats().ActiveSessions})
	})
	return mux, func() { _ = h.Close() }, nil
}

// bareHandler writes a token answer of the handler's: the same headers and
// a JSON body of the same size, taken from one real answer, with every
// value shared between requests. It is the floor net/http sets for any
// handler that serves this answer.
type bareHandler struct {
	header http.Header
	body   []byte
}

func newBareHandler(h http.Handler) (*bareHandler, error) {
	r := httptest.NewRequest(http.MethodPost, BasePath+"/token", nil)
	r.Header.Set("Origin", Origin)
	r.RemoteAddr = "192.0.2.1:1"
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		return nil, fmt.Errorf("bench: sample token request: status %d: %s", w.Code, w.Body)
	}
	return &bareHandler{header: w.Result().Header, body: w.Body.Bytes()}, nil
}

func (b *bareHandler) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	hd := w.Header()
	for k, v := range b.header {
		hd[k] = v
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b.body)
}

// Mem is a process's memory after a garbage collection.
type Mem struct {
	HeapAlloc  uint64 `json:"heapAlloc"`
	HeapInuse  uint64 `json:"heapInuse"`
	RSS        uint64 `json:"rss"`
	Goroutines int    `json:"goroutines"`
}

// ReadMem collects garbage and reads this process's heap and resident set.
func ReadMem() Mem {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return Mem{HeapAlloc: ms.HeapAlloc, HeapInuse: ms.HeapInuse, RSS: readRSS(), Goroutines: runtime.NumGoroutine()}
}

// readRSS returns VmRSS from /proc/self/status, or 0 where there is none.
func readRSS() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// NewHTTPServer is the example server's http.Server around h.
func NewHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      20 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(slog.DiscardHandler, slog.LevelWarn),
	}
}

// Server is a load server running in this process.
type Server struct {
	Addr  string
	srv   *http.Server
	close func()
	done  chan error
}

// StartServer serves NewServerHandler(opts) on a loopback port.
func StartServer(opts []realtimeauth.Option) (*Server, error) {
	h, closeH, err := NewServerHandler(opts)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{Addr: ln.Addr().String(), srv: NewHTTPServer(h), close: closeH, done: make(chan error, 1)}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

// Stop shuts the server down, waiting for in-flight requests.
func (s *Server) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	<-s.done
	s.close()
	return err
}

// RemoteMem asks a load server at addr for its memory figures.
func RemoteMem(addr string) (Mem, error) {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + StatsPath)
	if err != nil {
		return Mem{}, err
	}
	defer resp.Body.Close()
	var m Mem
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&m); err != nil {
		return Mem{}, err
	}
	return m, nil
}

// RemoteLive asks a load server at addr for its live-session count.
func RemoteLive(addr string) (int, error) {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + LivePath)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var v struct {
		Sessions int `json:"sessions"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&v); err != nil {
		return 0, err
	}
	return v.Sessions, nil
}

// RemoteProfile takes a CPU profile of the load server at addr over d and
// writes it to path.
func RemoteProfile(addr string, d time.Duration, path string) error {
	c := http.Client{Timeout: d + 30*time.Second}
	resp, err := c.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, max(int(d.Seconds()), 1)))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("bench: profile: status %d", resp.StatusCode)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

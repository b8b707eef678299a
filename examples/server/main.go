// Command server is realtimeauth's example token server: the handler
// mounted in a plain http.ServeMux, configured from the environment.
//
// Without OPENAI_API_KEY it runs in dev mode, minting fake ek_dev_ tokens
// locally, so that it works out of the box:
//
//	go run ./examples/server
//	curl -X POST -H 'Origin: http://localhost:4321' localhost:4321/api/voice-agent/token
//
// With REDIS_URL (redis://[user:password@]host:port[/db]) it keeps its rate
// limits, sessions and abuse state in Redis, shared by every instance. Every
// variable is in README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/metrics"
)

func main() {
	os.Exit(start(context.Background(), os.Getenv, os.Stderr))
}

// start runs the server and returns its exit code. A failure is logged
// like every other line, as JSON with LOG_FORMAT=json.
func start(ctx context.Context, getenv func(string) string, logOut io.Writer) int {
	if err := run(ctx, getenv, logOut, nil); err != nil {
		newLogger(strings.TrimSpace(getenv("LOG_FORMAT")) == "json", logOut).Error("server: " + err.Error())
		return 1
	}
	return 0
}

// newLogger logs text or JSON. In JSON, durations are numbers of seconds
// (slog's default is integer nanoseconds).
func newLogger(json bool, out io.Writer) *slog.Logger {
	if !json {
		return slog.New(slog.NewTextHandler(out, nil))
	}
	return slog.New(slog.NewJSONHandler(out, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Value.Kind() == slog.KindDuration {
				return slog.Float64(a.Key, a.Value.Duration().Seconds())
			}
			return a
		},
	}))
}

// run starts the server and blocks until ctx is done or SIGINT/SIGTERM
// arrives, then shuts down gracefully. ready, if not nil, receives the
// listening address.
func run(ctx context.Context, getenv func(string) string, logOut io.Writer, ready chan<- string) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return fmt.Errorf("bad configuration:\n%w", err)
	}
	logger := newLogger(cfg.LogJSON, logOut)
	// Any library that logs through slog.Default or the log package writes
	// in the same format too.
	slog.SetDefault(logger)
	for _, w := range cfg.warnings() {
		logger.Warn(w)
	}

	var collector *metrics.Collector
	if cfg.MetricsAddr != "" {
		collector = metrics.New()
	}
	minter, err := newMinter(cfg, logger, collector)
	if err != nil {
		return err
	}
	// Listen first: the default allowed origins follow the port as bound.
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	defer ln.Close()
	if cfg.AllowedOrigins == nil {
		host, _, _ := net.SplitHostPort(cfg.Addr)
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		cfg.AllowedOrigins = cfg.listenOrigins(host, port)
	}
	h, closeHandler, err := newHandler(ctx, cfg, logger, collector, minter)
	if err != nil {
		return err
	}
	defer closeHandler()

	mux := http.NewServeMux()
	var api http.Handler = h
	if collector != nil {
		api = collector.Middleware(h) // request latency
	}
	mux.Handle("/api/voice-agent/", api)
	registerDemo(mux, logger, h, cfg.AllowedOrigins)
	srv := newServer(cfg, mux, logger)
	logListening(cfg, ln, logger)

	served := make(chan error, 2)
	metricsSrv, err := serveMetrics(cfg, collector, h, logger, served)
	if err != nil {
		return err
	}
	if ready != nil {
		ready <- ln.Addr().String()
	}
	return serveUntilDone(ctx, cfg, logger, srv, ln, metricsSrv, served)
}

// newMinter is the dev minter in dev mode, else OpenAI's, through the
// collector's transport when there is one.
func newMinter(cfg config, logger *slog.Logger, collector *metrics.Collector) (realtimeauth.Minter, error) {
	if cfg.DevMode() {
		logger.Warn("DEV MODE: OPENAI_API_KEY is not set, so tokens are FAKE (ek_dev_…) and minted locally; " +
			"they will not connect to OpenAI. Set OPENAI_API_KEY for real tokens.")
		return realtimeauth.NewDevMinter(nil), nil
	}
	mcfg := realtimeauth.OpenAIConfig{BaseURL: cfg.BaseURL, Model: cfg.Model, Logger: logger}
	if collector != nil {
		mcfg.WrapTransport = collector.Transport
	}
	m, err := realtimeauth.NewOpenAIMinter(cfg.APIKey, mcfg)
	if err != nil {
		return nil, err
	}
	logger.Info("minting with OpenAI", "base_url", cfg.BaseURL, "model", cfg.Model)
	return m, nil
}

// newHandler is the handler the configuration asks for, and the function
// that closes it, then the Redis client, then the sideband watcher.
func newHandler(ctx context.Context, cfg config, logger *slog.Logger, collector *metrics.Collector,
	minter realtimeauth.Minter) (*realtimeauth.Handler, func(), error) {
	opts, err := cfg.handlerOptions()
	if err != nil {
		return nil, nil, err
	}
	opts = append(opts, realtimeauth.WithLogger(logger))
	if collector != nil {
		opts = append(opts, realtimeauth.WithEventHook(collector.Event))
	}
	callOpts, closeCalls, err := cfg.Calls.handlerOptions(cfg.DevMode(), logger)
	if err != nil {
		return nil, nil, err
	}
	opts = append(opts, callOpts...)
	closeRedis := func() {}
	if cfg.Redis != nil {
		redisOpts, closeClient, err := cfg.redisHandlerOptions(ctx, logger)
		if err != nil {
			closeCalls()
			return nil, nil, err
		}
		closeRedis = closeClient
		opts = append(opts, redisOpts...)
	}
	h, err := realtimeauth.New(minter, opts...)
	if err != nil {
		closeRedis()
		closeCalls()
		return nil, nil, err
	}
	return h, func() {
		_ = h.Close()
		closeRedis()
		closeCalls()
	}, nil
}

// newServer is the HTTP server of mux, with timeouts that let a slow
// upstream answer.
func newServer(cfg config, mux *http.ServeMux, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           mux,
		TLSConfig:         cfg.TLS,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      cfg.UpstreamTimeout + 10*time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// logListening logs where the server listens and the demo page's
// addresses: every allowed origin without a wildcard.
func logListening(cfg config, ln net.Listener, logger *slog.Logger) {
	scheme := "http://"
	if cfg.TLS != nil {
		scheme = "https://"
	}
	open := make([]string, 0, len(cfg.AllowedOrigins))
	for _, o := range cfg.AllowedOrigins {
		if o != "*" && !strings.Contains(o, "*.") {
			open = append(open, o+"/")
		}
	}
	logger.Info("realtimeauth example server listening",
		"addr", scheme+ln.Addr().String(), "token", "POST /api/voice-agent/token",
		"allowed_origins", cfg.AllowedOrigins, "demo_page", open, "dev_mode", cfg.DevMode())
}

// serveMetrics serves GET /metrics on METRICS_ADDR when there is a
// collector, sending Serve's result to served; it returns the server, nil
// without a collector.
func serveMetrics(cfg config, collector *metrics.Collector, h *realtimeauth.Handler, logger *slog.Logger,
	served chan<- error) (*http.Server, error) {
	if collector == nil {
		return nil, nil
	}
	mln, err := net.Listen("tcp", cfg.MetricsAddr)
	if err != nil {
		return nil, fmt.Errorf("METRICS_ADDR: %w", err)
	}
	collector.Watch(h)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector)
	metricsMux := http.NewServeMux()
	metricsMux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	metricsSrv := &http.Server{Handler: metricsMux, ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
	logger.Info("serving Prometheus metrics", "addr", "http://"+mln.Addr().String()+"/metrics")
	go func() { served <- metricsSrv.Serve(mln) }()
	return metricsSrv, nil
}

// serveUntilDone serves srv on ln until one of the servers fails, or ctx
// is done or SIGINT/SIGTERM arrives; then it shuts the metrics server
// (metricsSrv, nil for none) and srv down gracefully.
func serveUntilDone(ctx context.Context, cfg config, logger *slog.Logger, srv *http.Server, ln net.Listener,
	metricsSrv *http.Server, served chan error) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		if cfg.TLS != nil {
			served <- srv.ServeTLS(ln, "", "")
		} else {
			served <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down: finishing in-flight requests")
	shutCtx, cancel := context.WithTimeout(context.Background(), cfg.UpstreamTimeout+5*time.Second)
	defer cancel()
	if metricsSrv != nil {
		_ = metricsSrv.Shutdown(shutCtx)
		if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	if err := srv.Shutdown(shutCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	logger.Info("stopped")
	return nil
}

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
// limits, sessions and abuse state in Redis, shared by every instance.
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
	"syscall"
	"time"

	"github.com/realtimeauth/realtimeauth"
)

func main() {
	if err := run(context.Background(), os.Getenv, os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(1)
	}
}

// run starts the server and blocks until ctx is done or SIGINT/SIGTERM
// arrives, then shuts down gracefully. ready, if not nil, receives the
// listening address.
func run(ctx context.Context, getenv func(string) string, logOut io.Writer, ready chan<- string) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return fmt.Errorf("bad configuration:\n%w", err)
	}
	var logger *slog.Logger
	if cfg.LogJSON {
		logger = slog.New(slog.NewJSONHandler(logOut, nil))
	} else {
		logger = slog.New(slog.NewTextHandler(logOut, nil))
	}

	var minter realtimeauth.Minter
	if cfg.DevMode() {
		minter = &realtimeauth.DevMinter{}
		logger.Warn("DEV MODE: OPENAI_API_KEY is not set, so tokens are FAKE (" + realtimeauth.DevTokenPrefix +
			"…) and minted locally; they will not connect to OpenAI. Set OPENAI_API_KEY for real tokens.")
	} else {
		m, err := realtimeauth.NewOpenAIMinter(cfg.APIKey,
			realtimeauth.WithBaseURL(cfg.BaseURL), realtimeauth.WithModel(cfg.Model),
			realtimeauth.WithMinterLogger(logger))
		if err != nil {
			return err
		}
		minter = m
		logger.Info("minting with OpenAI", "endpoint", m.Endpoint(), "model", m.Model())
	}

	opts := append(cfg.handlerOptions(), realtimeauth.WithLogger(logger))
	if cfg.Redis != nil {
		redisOpts, closeRedis, err := cfg.redisHandlerOptions(ctx, logger)
		if err != nil {
			return err
		}
		defer closeRedis()
		opts = append(opts, redisOpts...)
	}
	h, err := realtimeauth.New(minter, opts...)
	if err != nil {
		return err
	}
	defer h.Close()

	mux := http.NewServeMux()
	mux.Handle("/api/voice-agent/", h)
	registerDemo(mux)

	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      cfg.UpstreamTimeout + 10*time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	logger.Info("realtimeauth example server listening",
		"addr", "http://"+ln.Addr().String(), "token", "POST /api/voice-agent/token",
		"allowed_origins", cfg.AllowedOrigins, "dev_mode", cfg.DevMode())
	if ready != nil {
		ready <- ln.Addr().String()
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down: finishing in-flight requests")
	shutCtx, cancel := context.WithTimeout(context.Background(), cfg.UpstreamTimeout+5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	logger.Info("stopped")
	return nil
}

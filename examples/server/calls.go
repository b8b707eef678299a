package main

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/sideband"
)

// callSettings are the relay's variables (POST /api/voice-agent/calls).
type callSettings struct {
	MaxDuration  time.Duration // 0: off
	MaxPerClient int
	Sideband     bool
}

// loadCallSettings reads VOICE_AGENT_MAX_CALL_DURATION (a Go duration in
// 10s..60m, or seconds; default off), VOICE_AGENT_MAX_CALLS_PER_CLIENT
// (1..1000, default 2) and VOICE_AGENT_CALL_SIDEBAND (on or off, default
// on).
func loadCallSettings(getenv func(string) string) (callSettings, []error) {
	s := callSettings{MaxPerClient: 2, Sideband: true}
	var errs []error
	if v := strings.TrimSpace(getenv("VOICE_AGENT_MAX_CALL_DURATION")); v != "" {
		d, err := time.ParseDuration(v)
		if n, nerr := strconv.Atoi(v); nerr == nil {
			d, err = time.Duration(n)*time.Second, nil
		}
		if err != nil || d < 10*time.Second || d > time.Hour {
			errs = append(errs, fmt.Errorf("VOICE_AGENT_MAX_CALL_DURATION=%q: want a duration (like 15m, or seconds) in 10s..60m", v))
		} else {
			s.MaxDuration = d
		}
	}
	if v := strings.TrimSpace(getenv("VOICE_AGENT_MAX_CALLS_PER_CLIENT")); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			errs = append(errs, fmt.Errorf("VOICE_AGENT_MAX_CALLS_PER_CLIENT=%q: want a whole number in 1..1000", v))
		} else {
			s.MaxPerClient = n
		}
	}
	switch v := strings.ToLower(strings.TrimSpace(getenv("VOICE_AGENT_CALL_SIDEBAND"))); v {
	case "", "on", "true", "1":
	case "off", "false", "0":
		s.Sideband = false
	default:
		errs = append(errs, fmt.Errorf("VOICE_AGENT_CALL_SIDEBAND=%q: want on or off", v))
	}
	return s, errs
}

// handlerOptions are the relay's options, and a function that stops the
// sideband watcher (after the handler is closed). In dev mode the relay is
// off (501 relay_unavailable), so no watcher is started.
func (s callSettings) handlerOptions(devMode bool, logger *slog.Logger) ([]realtimeauth.Option, func(), error) {
	opts := []realtimeauth.Option{realtimeauth.WithLimits(realtimeauth.Limits{
		MaxCallsPerClient: s.MaxPerClient,
		MaxCallDuration:   s.MaxDuration, // 0: off, as in Limits
	})}
	if devMode || !s.Sideband {
		if !devMode {
			logger.Warn("VOICE_AGENT_CALL_SIDEBAND=off: a relayed call counts against its caps until its DELETE, its deadline or OpenAI's 60-minute limit, even if the user closed the tab")
		}
		return opts, func() {}, nil
	}
	w, err := sideband.New(sideband.WithLogger(logger))
	if err != nil {
		return nil, nil, err
	}
	return append(opts, realtimeauth.WithCallWatcher(w)), func() { _ = w.Close() }, nil
}

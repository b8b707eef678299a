package realtimeauth

import (
	"context"
	"log/slog"
	"time"
)

// Names of the security events, stable across releases.
const (
	EventTokenIssued         = "token_issued"
	EventTokenRefreshed      = "token_refreshed"
	EventRateLimitExceeded   = "rate_limit_exceeded"
	EventClientBlocked       = "client_blocked"
	EventOriginRejected      = "origin_rejected"
	EventSessionMismatch     = "session_mismatch"
	EventRefreshLimitReached = "refresh_limit_reached"
	EventRefreshTooSoon      = "refresh_too_soon"
	EventSessionRevoked      = "session_revoked"
	EventUnauthorized        = "unauthorized"
	EventUpstreamError       = "upstream_error"
	EventInvalidRequest      = "invalid_request"
	EventSessionNotFound     = "session_not_found"
	EventTooManySessions     = "too_many_sessions"
	EventUpstreamBusy        = "upstream_busy"
	EventStoreError          = "store_error"
)

const (
	levelInfo  = slog.LevelInfo
	levelWarn  = slog.LevelWarn
	levelError = slog.LevelError
)

func attrErr(err error) slog.Attr { return slog.String("error", err.Error()) }

// Severity grades an Event.
type Severity string

// Severities, from routine to alarming.
const (
	SeverityInfo   Severity = "info"
	SeverityLow    Severity = "low"
	SeverityMedium Severity = "medium"
	SeverityHigh   Severity = "high"
)

func (s Severity) level() slog.Level {
	switch s {
	case SeverityInfo:
		return slog.LevelInfo
	case SeverityHigh:
		return slog.LevelError
	default:
		return slog.LevelWarn
	}
}

// Event is one security-relevant decision. It never carries a token value or
// an API key: Detail is one of the handler's own fixed phrases.
type Event struct {
	Name      string
	Time      time.Time
	Severity  Severity
	ClientIP  string
	UserAgent string
	Subject   string
	SessionID string
	// Status and Code are the HTTP answer the decision led to.
	Status int
	Code   string
	// RetryAfter is the wait the client was told, if any.
	RetryAfter time.Duration
	// Detail is a short fixed explanation.
	Detail string
}

// EventHook receives every Event (WithEventHook). It runs on the request's
// goroutine: keep it fast, hand slow work to a goroutine of your own.
type EventHook func(Event)

func (h *Handler) emit(ctx context.Context, ev Event) {
	if h.cfg.eventHook != nil {
		h.cfg.eventHook(ev)
	}
	lvl := ev.Severity.level()
	if !h.log.Enabled(ctx, lvl) {
		return
	}
	attrs := make([]slog.Attr, 0, 11)
	attrs = append(attrs,
		slog.String("event", ev.Name),
		slog.String("severity", string(ev.Severity)),
		slog.String("client_ip", ev.ClientIP),
	)
	if ev.UserAgent != "" {
		attrs = append(attrs, slog.String("user_agent", ev.UserAgent))
	}
	if ev.Subject != "" {
		attrs = append(attrs, slog.String("subject", ev.Subject))
	}
	if ev.SessionID != "" {
		attrs = append(attrs, slog.String("session_id", ev.SessionID))
	}
	if ev.Status != 0 {
		attrs = append(attrs, slog.Int("status", ev.Status), slog.String("code", ev.Code))
	}
	if ev.RetryAfter > 0 {
		attrs = append(attrs, slog.Duration("retry_after", ev.RetryAfter))
	}
	if ev.Detail != "" {
		attrs = append(attrs, slog.String("detail", ev.Detail))
	}
	h.log.LogAttrs(ctx, lvl, "realtimeauth security event", attrs...)
}

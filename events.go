package realtimeauth

import (
	"context"
	"log/slog"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/realtimeauth/realtimeauth/calls"
)

// EventName names a security event. The names are stable across releases.
type EventName string

// The security events.
const (
	EventTokenIssued         EventName = "token_issued"
	EventTokenRefreshed      EventName = "token_refreshed"
	EventSessionEvicted      EventName = "session_evicted"
	EventRateLimitExceeded   EventName = "rate_limit_exceeded"
	EventClientBlocked       EventName = "client_blocked"
	EventOriginRejected      EventName = "origin_rejected"
	EventSessionMismatch     EventName = "session_mismatch"
	EventRefreshLimitReached EventName = "refresh_limit_reached"
	EventRefreshTooSoon      EventName = "refresh_too_soon"
	EventSessionRevoked      EventName = "session_revoked"
	EventUnauthorized        EventName = "unauthorized"
	EventUpstreamError       EventName = "upstream_error"
	EventInvalidRequest      EventName = "invalid_request"
	EventSessionNotFound     EventName = "session_not_found"
	EventTooManySessions     EventName = "too_many_sessions"
	EventUpstreamBusy        EventName = "upstream_busy"
	EventStoreError          EventName = "store_error"
	EventCallStarted         EventName = "call_started"
	EventCallEnded           EventName = "call_ended"
	EventTooManyCalls        EventName = "too_many_calls"
)

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
	Name      EventName
	Time      time.Time
	Severity  Severity
	RequestID string
	ClientIP  string
	UserAgent string
	Subject   string
	SessionID string
	// Status and Code are the HTTP answer the decision led to.
	Status int
	Code   Code
	// RetryAfter is the wait the client was told, if any.
	RetryAfter time.Duration
	// Detail is a short fixed explanation.
	Detail string
	// CallID is the relayed call the event is about (call_started,
	// call_ended), and Reason why a call ended (call_ended).
	CallID string
	Reason calls.EndReason
	// Latency is how long the Minter's Mint (or, for a relayed call, its
	// Call) took, retries included, on the handler's clock: set on
	// token_issued, token_refreshed, call_started and on the upstream_error
	// of a failed mint or call; 0 on every other event, a failed hang-up's
	// upstream_error included.
	Latency time.Duration
}

// newEvent is the event named name about the request k.
func (h *Handler) newEvent(k *request, name EventName, sev Severity) Event {
	return Event{
		Name:      name,
		Time:      k.now,
		Severity:  sev,
		RequestID: k.id,
		ClientIP:  k.client.ip,
		UserAgent: cut(k.r.UserAgent(), maxUserAgent),
		Subject:   k.subject,
		SessionID: k.sessionID,
	}
}

// emit hands ev to the hook and, within the log's allowance, to the log;
// extra attributes go to the log line only.
func (h *Handler) emit(k *request, ev Event, extra ...slog.Attr) {
	if h.cfg.eventHook != nil {
		h.cfg.eventHook(ev)
	}
	lvl := ev.Severity.level()
	if !h.logs(k.r.Context(), lvl) || !h.quota.admit(h, string(ev.Name), k.client.logKey(), lvl, k.now) {
		return
	}
	attrs := make([]slog.Attr, 0, 12+len(extra))
	attrs = append(attrs,
		slog.String("event", string(ev.Name)),
		slog.String("severity", string(ev.Severity)),
		slog.String("request_id", ev.RequestID),
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
		attrs = append(attrs, slog.Int("status", ev.Status), slog.String("code", string(ev.Code)))
	}
	if ev.RetryAfter > 0 {
		attrs = append(attrs, slog.Float64("retry_after", ev.RetryAfter.Seconds()))
	}
	if ev.Detail != "" {
		attrs = append(attrs, slog.String("detail", ev.Detail))
	}
	if ev.CallID != "" {
		attrs = append(attrs, slog.String("call_id", ev.CallID))
	}
	if ev.Reason != "" {
		attrs = append(attrs, slog.String("reason", string(ev.Reason)))
	}
	attrs = append(attrs, extra...)
	h.log.LogAttrs(k.r.Context(), lvl, "realtimeauth security event", attrs...)
}

// logf writes a line about request k that is not an event (a backend
// failure), with the request's ID, within the same allowance as events.
func (h *Handler) logf(k *request, lvl slog.Level, msg string, attrs ...slog.Attr) {
	if !h.logs(k.r.Context(), lvl) || !h.quota.admit(h, msg, k.client.logKey(), lvl, k.now) {
		return
	}
	all := append([]slog.Attr{slog.String("request_id", k.id), slog.String("client_ip", k.client.ip)}, attrs...)
	h.log.LogAttrs(k.r.Context(), lvl, msg, all...)
}

// logs reports whether a line at lvl is written at all. Without
// WithLogger, info lines (one per issued token) are left out: the default
// logger writes each line with its own system call.
func (h *Handler) logs(ctx context.Context, lvl slog.Level) bool {
	return (!h.quietInfo || lvl > slog.LevelInfo) && h.log.Enabled(ctx, lvl)
}

func attrErr(err error) slog.Attr { return slog.String("error", err.Error()) }

// Log suppression: lines of one kind (an event name or a log message) about
// one client are written at most logsPerMinute times per minute of the
// handler's clock, and lines of one kind about all clients together at most
// logsPerKindPerMinute times, so that neither one client nor many addresses
// (an IPv6 client counts by its /48 here) can turn refusals, which are free
// to send, into log volume. The rest are counted, and each kind's count is
// written as one "suppressed" line at the first line of any later minute.
// There is no goroutine: the summary waits for the next line.
const (
	logsPerMinute        = 10
	logsPerKindPerMinute = 100
	// maxLogKeys bounds the clients tracked per kind in one minute; past it,
	// further clients share one count for that kind (client "*"), so a flood
	// of one kind from many addresses cannot crowd other kinds out.
	maxLogKeys = 10_000
)

type logKey struct{ kind, client string }

type logCount struct {
	logged, suppressed int32
}

// kindCount is one kind's minute: lines written, lines suppressed, and how
// many clients had lines suppressed.
type kindCount struct {
	logged, suppressed, clients, keys int32
	level                             slog.Level
}

type logQuota struct {
	mu     sync.Mutex
	minute int64
	counts map[logKey]logCount
	kinds  map[string]kindCount
}

type logSummary struct {
	kind  string
	count kindCount
}

// admit reports whether a line of kind about client may be written at now,
// and writes the summaries of the minute that now has ended.
func (q *logQuota) admit(h *Handler, kind, client string, lvl slog.Level, now time.Time) bool {
	minute := now.Unix() / 60
	q.mu.Lock()
	var ended []logSummary
	prev := q.minute
	if minute > q.minute {
		for k, c := range q.kinds {
			if c.suppressed > 0 {
				ended = append(ended, logSummary{k, c})
			}
		}
		clear(q.counts)
		clear(q.kinds)
		q.minute = minute
	}
	kc := q.kinds[kind]
	key := logKey{kind, client}
	c, ok := q.counts[key]
	if !ok && kc.keys >= maxLogKeys {
		key.client = "*"
		c, ok = q.counts[key]
	}
	if !ok {
		kc.keys++
	}
	kc.level = lvl
	admitted := c.logged < logsPerMinute && kc.logged < logsPerKindPerMinute
	if admitted {
		c.logged++
		kc.logged++
	} else {
		if c.suppressed == 0 {
			kc.clients++
		}
		c.suppressed++
		kc.suppressed++
	}
	q.counts[key] = c
	q.kinds[kind] = kc
	q.mu.Unlock()
	from := time.Unix(prev*60, 0).UTC()
	for _, s := range ended {
		h.log.LogAttrs(context.Background(), s.count.level, "realtimeauth: log lines suppressed",
			slog.String("kind", s.kind), slog.Int("suppressed", int(s.count.suppressed)),
			slog.Int("clients", int(s.count.clients)), slog.Time("minute", from))
	}
	return admitted
}

// maxUserAgent bounds the User-Agent an event carries, so that a log line
// stays small whatever a client sends (Go's server reads headers up to 1 MB).
const maxUserAgent = 256

// cut returns s limited to n bytes, not splitting a UTF-8 sequence.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

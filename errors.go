package realtimeauth

import (
	"errors"
	"fmt"
	"time"
)

// Errors returned by the stores, the limiters and the minters. Compare with
// errors.Is; implementations of the interfaces in this package return (or
// wrap) these so that the handler maps them to the right HTTP answer.
var (
	// ErrSessionNotFound: no session has that ID, or it has expired.
	ErrSessionNotFound = errors.New("realtimeauth: session not found")
	// ErrSessionMismatch: the session belongs to another client IP or subject.
	ErrSessionMismatch = errors.New("realtimeauth: session belongs to another client")
	// ErrSessionRevoked: the session was revoked.
	ErrSessionRevoked = errors.New("realtimeauth: session revoked")
	// ErrRefreshLimit: the session has used all its refreshes.
	ErrRefreshLimit = errors.New("realtimeauth: refresh limit reached")
	// ErrRefreshTooSoon: the session's last token is younger than the minimum
	// refresh interval.
	ErrRefreshTooSoon = errors.New("realtimeauth: refresh too soon")
	// ErrTooManySessions: the subject already holds the maximum number of
	// live sessions.
	ErrTooManySessions = errors.New("realtimeauth: too many sessions for subject")
	// ErrStoreFull: the store holds MaxSessions live sessions and the
	// client is among the heaviest (it holds as many live sessions as any
	// client), so Open evicts nobody else to make room for it.
	ErrStoreFull = errors.New("realtimeauth: store full")
	// ErrRateLimited: an allowance is used up; *LimitError wraps it.
	ErrRateLimited = errors.New("realtimeauth: rate limited")
	// ErrUpstream: the minter's upstream (OpenAI) failed or answered
	// something unusable. *UpstreamError wraps it with the details.
	ErrUpstream = errors.New("realtimeauth: upstream error")
	// ErrForbidden can be wrapped by a WithSessionConfig hook to refuse a
	// request with 403 instead of 400.
	ErrForbidden = errors.New("realtimeauth: forbidden")
	// ErrUnauthenticated can be wrapped by a WithAuthenticator hook; any
	// error from the hook is a 401 in any case.
	ErrUnauthenticated = errors.New("realtimeauth: unauthenticated")
)

// LimitError is a refusal by an allowance (see Allowance).
type LimitError struct {
	// Key is the refusing Allowance's Key.
	Key string
	// RetryAfter is how long until that allowance would admit:
	// 0 < RetryAfter <= its Window.
	RetryAfter time.Duration
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("realtimeauth: rate limited: %s for %v", e.Key, e.RetryAfter)
}

// Unwrap lets errors.Is match ErrRateLimited.
func (e *LimitError) Unwrap() error { return ErrRateLimited }

// UpstreamError describes a failed call to the token issuer. Its Message is
// the upstream's own text, kept for logs: the handler never sends it to a
// client, since it can carry account details.
type UpstreamError struct {
	// StatusCode is the upstream HTTP status, or 0 when no usable response
	// arrived (connection error, malformed body).
	StatusCode int
	// RetryAfter is the upstream's Retry-After (or retry-after-ms), 0 if none.
	RetryAfter time.Duration
	// RequestID is the upstream's x-request-id, for support tickets.
	RequestID string
	// Message is the upstream's error message, redacted of the API key.
	Message string
	// Attempts is how many upstream calls were made.
	Attempts int
	// Err is the underlying cause, if any.
	Err error
}

func (e *UpstreamError) Error() string {
	s := "realtimeauth: upstream error"
	if e.StatusCode != 0 {
		s += fmt.Sprintf(": status %d", e.StatusCode)
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap lets errors.Is match ErrUpstream and the cause (for example
// context.DeadlineExceeded).
func (e *UpstreamError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrUpstream}
	}
	return []error{ErrUpstream, e.Err}
}

// Error codes: the stable "code" field of every error response. Clients
// branch on these, never on the human-readable "error" text.
const (
	CodeInvalidRequest       = "invalid_request"
	CodeUnsupportedMediaType = "unsupported_media_type"
	CodeOriginNotAllowed     = "origin_not_allowed"
	CodeUnauthorized         = "unauthorized"
	CodeForbidden            = "forbidden"
	CodeBlocked              = "blocked"
	CodeSessionMismatch      = "session_mismatch"
	CodeSessionRevoked       = "session_revoked"
	CodeRefreshLimitReached  = "refresh_limit_reached"
	CodeSessionNotFound      = "session_not_found"
	CodeNotFound             = "not_found"
	CodeMethodNotAllowed     = "method_not_allowed"
	CodePayloadTooLarge      = "payload_too_large"
	CodeRateLimited          = "rate_limited"
	CodeRefreshTooSoon       = "refresh_too_soon"
	CodeTooManySessions      = "too_many_sessions"
	CodeUpstreamError        = "upstream_error"
	CodeUpstreamRateLimited  = "upstream_rate_limited"
	CodeUpstreamBusy         = "upstream_busy"
	CodeUpstreamTimeout      = "upstream_timeout"
	CodeStoreUnavailable     = "store_unavailable"
	CodeInternal             = "internal_error"
	// CodeUnavailable: the handler was closed.
	CodeUnavailable = "unavailable"
	// CodeClientClosedRequest: the client went away during the mint (status
	// 499, as nginx logs it); nobody reads the answer.
	CodeClientClosedRequest = "client_closed_request"
)

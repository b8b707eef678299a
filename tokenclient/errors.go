package tokenclient

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

var (
	// ErrClosed is returned by every call on a closed Client, and to the
	// callers whose Token was waiting when Close was called.
	ErrClosed = errors.New("tokenclient: client closed")
	// ErrRedirect is the cause (Error.Err) when the server answered with a
	// redirect the client did not follow: the default client follows none,
	// and a client given to WithHTTPClient follows none to another origin
	// (scheme, host and port). Such an answer is final, never retried.
	ErrRedirect = errors.New("tokenclient: redirect refused")
)

// Error is one failed request for a token: an answer other than a token,
// or no answer at all. Token returns the last one of a round of retries;
// Events.Error receives every one. Use errors.As to get it.
type Error struct {
	// Endpoint is the path the request went to, relative to the base URL:
	// "/token" or "/refresh-token".
	Endpoint string
	// Status is the HTTP status, or 0 when no answer arrived.
	Status int
	// Code is the server's stable error code (realtimeauth.CodeXxx), or ""
	// when the answer carried none.
	Code string
	// Message is the server's human-readable error text, if any.
	Message string
	// RetryAfter is the wait the server asked for (Retry-After or the
	// body's retryAfter), 0 if none.
	RetryAfter time.Duration
	// Attempt is the request's number within its round, from 1.
	Attempt int
	// Err is the cause when no usable answer arrived (a network error, a
	// malformed body), else nil.
	Err error
}

func (e *Error) Error() string {
	s := "tokenclient: POST " + e.Endpoint
	if e.Status != 0 {
		s += fmt.Sprintf(": %d %s", e.Status, http.StatusText(e.Status))
	}
	if e.Code != "" {
		s += " (" + e.Code + ")"
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s + fmt.Sprintf(" [attempt %d]", e.Attempt)
}

// Unwrap returns the cause, if any.
func (e *Error) Unwrap() error { return e.Err }

// The server's codes the client acts on; they equal realtimeauth's CodeXxx
// constants (a test checks), copied so that this package needs only the
// standard library.
const (
	codeSessionNotFound     = "session_not_found"
	codeRefreshLimitReached = "refresh_limit_reached"
	codeSessionRevoked      = "session_revoked"
	codeSessionMismatch     = "session_mismatch"
)

// SessionGone reports whether the error says that the session cannot be
// refreshed any more, so that a new one must be started: 404
// session_not_found, 403 refresh_limit_reached, 401 session_revoked or 403
// session_mismatch. The client does that by itself.
func (e *Error) SessionGone() bool {
	switch {
	case e.Status == http.StatusNotFound && e.Code == codeSessionNotFound,
		e.Status == http.StatusForbidden && e.Code == codeRefreshLimitReached,
		e.Status == http.StatusUnauthorized && e.Code == codeSessionRevoked,
		e.Status == http.StatusForbidden && e.Code == codeSessionMismatch:
		return true
	}
	return false
}

// Retryable reports whether the same request may succeed later: no answer
// or an unusable one, a 408, a 429 or a 5xx. A redirect (3xx) and every
// other 4xx (400, 401 unauthorized, 403 origin_not_allowed, …) are final.
func (e *Error) Retryable() bool {
	return e.Status < 300 || e.Status == http.StatusRequestTimeout ||
		e.Status == http.StatusTooManyRequests || e.Status >= 500
}

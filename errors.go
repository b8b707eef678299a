package realtimeauth

import (
	"errors"
	"fmt"
	"time"
)

// Errors returned by the stores, the limiters and the minters. Compare with
// errors.Is; implementations of the interfaces in this package return (or
// wrap) these so that the handler maps them to the right HTTP answer. An
// allowance's refusal is a *LimitError and an upstream's failure an
// *UpstreamError: find them with errors.As.
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
	// ErrForbidden can be wrapped by a WithSessionConfig hook to refuse a
	// request with 403 instead of 400.
	ErrForbidden = errors.New("realtimeauth: forbidden")
)

// LimitError is a refusal by an allowance (see Allowance): an allowance is
// used up. Find it with errors.As.
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

// UpstreamError describes a failed call to the token issuer (OpenAI): it
// failed or answered something unusable. Find it with errors.As. Its Message is
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

// Unwrap returns the cause, Err, so that errors.Is matches it (for example
// context.DeadlineExceeded).
func (e *UpstreamError) Unwrap() error { return e.Err }

// Code is the stable "code" field of every error answer. Clients branch on
// it, never on the human-readable "error" text.
type Code string

// The error codes.
const (
	CodeInvalidRequest       Code = "invalid_request"
	CodeUnsupportedMediaType Code = "unsupported_media_type"
	CodeOriginNotAllowed     Code = "origin_not_allowed"
	CodeUnauthorized         Code = "unauthorized"
	CodeForbidden            Code = "forbidden"
	CodeBlocked              Code = "blocked"
	CodeSessionMismatch      Code = "session_mismatch"
	CodeSessionRevoked       Code = "session_revoked"
	CodeRefreshLimitReached  Code = "refresh_limit_reached"
	CodeSessionNotFound      Code = "session_not_found"
	CodeNotFound             Code = "not_found"
	CodeMethodNotAllowed     Code = "method_not_allowed"
	CodePayloadTooLarge      Code = "payload_too_large"
	CodeRateLimited          Code = "rate_limited"
	CodeRefreshTooSoon       Code = "refresh_too_soon"
	CodeTooManySessions      Code = "too_many_sessions"
	CodeUpstreamError        Code = "upstream_error"
	CodeUpstreamRateLimited  Code = "upstream_rate_limited"
	CodeUpstreamBusy         Code = "upstream_busy"
	CodeUpstreamTimeout      Code = "upstream_timeout"
	CodeStoreUnavailable     Code = "store_unavailable"
	CodeInternal             Code = "internal_error"
	// CodeUnavailable: the handler was closed.
	CodeUnavailable Code = "unavailable"
	// CodeClientClosedRequest: the client went away during the mint (status
	// 499, as nginx logs it); nobody reads the answer.
	CodeClientClosedRequest Code = "client_closed_request"
	// CodeTooManyCalls: the client or the user holds the maximum number of
	// live calls (Limits.MaxCallsPerClient, MaxCallsPerSubject).
	CodeTooManyCalls Code = "too_many_calls"
	// CodeCallMismatch: the call was made by another client or user.
	CodeCallMismatch Code = "call_mismatch"
	// CodeCallNotFound: no live call has that ID.
	CodeCallNotFound Code = "call_not_found"
	// CodeRelayUnavailable: the Minter cannot place calls (NewDevMinter: no
	// upstream can answer an offer), so the relay is off.
	CodeRelayUnavailable Code = "relay_unavailable"
)

// refusal names one row of the error table; call sites name the row and
// nothing else.
type refusal uint8

const (
	refBadJSON refusal = iota
	refBadRefreshBody
	refMissingSessionID
	refBadSessionID
	refBodyRead
	refTooLarge
	refMediaType
	refSessionConfig
	refForbidden
	refInternal
	refOrigin
	refUnauthorized
	refBlocked
	refSessionMismatch
	refSessionRevoked
	refRefreshLimit
	refSessionNotFound
	refNotFound
	refMethod
	refRateLimited
	refRefreshTooSoon
	refTooManySessions
	refStoreFull
	refUpstream
	refUpstreamLimited
	refUpstreamBusy
	refUpstreamTimeout
	refStoreUnavailable
	refUnavailable
	refClientGone
	refTooManyCalls
	refCallMismatch
	refCallNotFound
	refRelayUnavailable
	refBadOffer
	refOfferMediaType
	refMethodCall
	numRefusals
)

// row is one refusal: its answer (status, code, message), the event it
// emits ("" for none) at its severity, and whether it is a strike against
// the client.
type row struct {
	status int
	code   Code
	msg    string
	event  EventName
	sev    Severity
	strike bool
}

// errorTable is every refusal the handler can answer. A strike is earned by
// what only a broken or hostile client does (a malformed or oversized body,
// a foreign session, a failed authentication, going over a limit); a
// refused Origin is not one, since only a browser sends a foreign Origin,
// and any page the victim visits can make it send one; nor is an unknown
// session, since honest clients meet one whenever their session expired or
// was evicted to make room (behind one NAT address, often), while a 122-bit
// session ID cannot be guessed, so refusing it is all the defence it needs. The blocked
// answer emits no event per request: client_blocked is emitted once, when
// the block starts.
var errorTable = [numRefusals]row{
	refBadJSON:          {400, CodeInvalidRequest, "request body must be empty or a JSON object", EventInvalidRequest, SeverityLow, true},
	refBadRefreshBody:   {400, CodeInvalidRequest, `request body must be a JSON object with a string "sessionId"`, EventInvalidRequest, SeverityLow, true},
	refMissingSessionID: {400, CodeInvalidRequest, "sessionId is required", EventInvalidRequest, SeverityLow, true},
	refBadSessionID:     {400, CodeInvalidRequest, "sessionId is malformed", EventInvalidRequest, SeverityLow, true},
	refBodyRead:         {400, CodeInvalidRequest, "could not read the request body", EventInvalidRequest, SeverityLow, true},
	refTooLarge:         {413, CodePayloadTooLarge, "request body too large", EventInvalidRequest, SeverityLow, true},
	refMediaType:        {415, CodeUnsupportedMediaType, "request body must be application/json", EventInvalidRequest, SeverityLow, false},
	refSessionConfig:    {400, CodeInvalidRequest, "the session configuration for this request was refused", EventInvalidRequest, SeverityLow, false},
	refForbidden:        {403, CodeForbidden, "forbidden", EventInvalidRequest, SeverityLow, false},
	refInternal:         {500, CodeInternal, "internal error", EventInvalidRequest, SeverityHigh, false},
	refOrigin:           {403, CodeOriginNotAllowed, "origin not allowed", EventOriginRejected, SeverityMedium, false},
	refUnauthorized:     {401, CodeUnauthorized, "authentication required", EventUnauthorized, SeverityMedium, true},
	refBlocked:          {403, CodeBlocked, "too much suspicious activity from this client; try again later", "", "", false},
	refSessionMismatch:  {403, CodeSessionMismatch, "session belongs to another client", EventSessionMismatch, SeverityHigh, true},
	refSessionRevoked:   {401, CodeSessionRevoked, "session revoked", EventSessionRevoked, SeverityMedium, false},
	refRefreshLimit:     {403, CodeRefreshLimitReached, "session has reached its refresh limit; start a new session", EventRefreshLimitReached, SeverityLow, false},
	refSessionNotFound:  {404, CodeSessionNotFound, "session not found or expired", EventSessionNotFound, SeverityMedium, false},
	refNotFound:         {404, CodeNotFound, "not found", "", "", false},
	refMethod:           {405, CodeMethodNotAllowed, "method not allowed", "", "", false},
	refRateLimited:      {429, CodeRateLimited, "too many token requests; try again later", EventRateLimitExceeded, SeverityMedium, true},
	refRefreshTooSoon:   {429, CodeRefreshTooSoon, "refresh requested too soon after the last token", EventRefreshTooSoon, SeverityLow, false},
	refTooManySessions:  {429, CodeTooManySessions, "too many open sessions for this user", EventTooManySessions, SeverityMedium, false},
	refStoreFull:        {429, CodeTooManySessions, "the server holds too many sessions; try again later", EventTooManySessions, SeverityMedium, false},
	refUpstream:         {502, CodeUpstreamError, "the token issuer failed; try again", EventUpstreamError, SeverityHigh, false},
	refUpstreamLimited:  {503, CodeUpstreamRateLimited, "the token issuer is rate limiting this server; try again later", EventUpstreamError, SeverityHigh, false},
	refUpstreamBusy:     {503, CodeUpstreamBusy, "token budget exhausted; try again later", EventUpstreamBusy, SeverityHigh, false},
	refUpstreamTimeout:  {504, CodeUpstreamTimeout, "the token issuer did not answer in time", EventUpstreamError, SeverityHigh, false},
	refStoreUnavailable: {503, CodeStoreUnavailable, "a backing store is unavailable; try again later", EventStoreError, SeverityHigh, false},
	refUnavailable:      {503, CodeUnavailable, "shutting down", "", "", false},
	refClientGone:       {499, CodeClientClosedRequest, "the client closed the request", "", "", false},
	refTooManyCalls:     {429, CodeTooManyCalls, "too many live calls for this client or user; hang one up first", EventTooManyCalls, SeverityMedium, false},
	refCallMismatch:     {403, CodeCallMismatch, "call belongs to another client", EventSessionMismatch, SeverityHigh, true},
	refCallNotFound:     {404, CodeCallNotFound, "call not found or ended", "", "", false},
	refRelayUnavailable: {501, CodeRelayUnavailable, "this server cannot relay calls: it has no OpenAI key (dev mode)", "", "", false},
	refBadOffer:         {400, CodeInvalidRequest, "request body must be an SDP offer", EventInvalidRequest, SeverityLow, true},
	refOfferMediaType:   {415, CodeUnsupportedMediaType, "request body must be application/sdp", EventInvalidRequest, SeverityLow, false},
	refMethodCall:       {405, CodeMethodNotAllowed, "method not allowed", "", "", false},
}

package realtimeauth

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"
)

func errorf(format string, a ...any) error {
	return fmt.Errorf("realtimeauth: "+format, a...)
}

// Header values, shared by every response. Each slice has len == cap, so a
// later Header.Add copies instead of writing into the shared array.
var (
	hdrJSON             = []string{"application/json"}
	hdrNoStore          = []string{"no-store"}
	hdrNoCache          = []string{"no-cache"}
	hdrNosniff          = []string{"nosniff"}
	hdrDeny             = []string{"DENY"}
	hdrCSP              = []string{"default-src 'none'; frame-ancestors 'none'"}
	hdrNoReferrer       = []string{"no-referrer"}
	hdrHSTS             = []string{"max-age=63072000; includeSubDomains"}
	hdrVaryOrigin       = []string{"Origin"}
	hdrAllowPOST        = []string{"OPTIONS, POST"}
	hdrAllowGET         = []string{"GET, HEAD"}
	hdrCloseConn        = []string{"close"}
	hdrAllowCredentials = []string{"true"}
)

// setActualCORSHeaders writes what rs/cors writes on an actual (not
// preflight) request from an origin already checked as allowed: Vary:
// Origin, Access-Control-Allow-Origin echoing the request's Origin, and
// Access-Control-Allow-Credentials when enabled. Writing them here instead
// of calling cors.HandlerFunc skips a second origin check and rs/cors's
// per-request debug-log argument list, which allocates even with its log
// off.
func setActualCORSHeaders(hd http.Header, r *http.Request, credentials bool) {
	if vary := hd["Vary"]; vary == nil {
		hd["Vary"] = hdrVaryOrigin
	} else {
		hd["Vary"] = append(vary, "Origin")
	}
	hd["Access-Control-Allow-Origin"] = r.Header["Origin"]
	if credentials {
		hd["Access-Control-Allow-Credentials"] = hdrAllowCredentials
	}
}

// setSecurityHeaders sets the headers every JSON answer carries.
func setSecurityHeaders(hd http.Header, tls bool) {
	hd["Content-Type"] = hdrJSON
	hd["Cache-Control"] = hdrNoStore
	hd["Pragma"] = hdrNoCache
	hd["X-Content-Type-Options"] = hdrNosniff
	hd["X-Frame-Options"] = hdrDeny
	hd["Content-Security-Policy"] = hdrCSP
	hd["Referrer-Policy"] = hdrNoReferrer
	if tls {
		hd["Strict-Transport-Security"] = hdrHSTS
	}
}

// apiError is one row of the error table: a status, a stable code and a
// fixed message. Its JSON prefix is built once.
type apiError struct {
	status int
	code   string
	msg    string
	prefix []byte // {"success":false,"error":"…","code":"…"
}

func newAPIError(status int, code, msg string) *apiError {
	b := []byte(`{"success":false,"error":`)
	b = appendJSONString(b, msg)
	b = append(b, `,"code":`...)
	b = appendJSONString(b, code)
	return &apiError{status: status, code: code, msg: msg, prefix: b}
}

var (
	errBadJSON          = newAPIError(400, CodeInvalidRequest, "request body must be empty or a JSON object")
	errBadRefreshBody   = newAPIError(400, CodeInvalidRequest, `request body must be a JSON object with a string "sessionId"`)
	errMissingSessionID = newAPIError(400, CodeInvalidRequest, "sessionId is required")
	errBadSessionID     = newAPIError(400, CodeInvalidRequest, "sessionId is malformed")
	errBodyRead         = newAPIError(400, CodeInvalidRequest, "could not read the request body")
	errSessionConfig    = newAPIError(400, CodeInvalidRequest, "the session configuration for this request was refused")
	errMediaType        = newAPIError(415, CodeUnsupportedMediaType, "request body must be application/json")
	errOrigin           = newAPIError(403, CodeOriginNotAllowed, "origin not allowed")
	errUnauthorized     = newAPIError(401, CodeUnauthorized, "authentication required")
	errForbidden        = newAPIError(403, CodeForbidden, "forbidden")
	errBlocked          = newAPIError(403, CodeBlocked, "too much suspicious activity from this client; try again later")
	errSessionMismatch  = newAPIError(403, CodeSessionMismatch, "session belongs to another client")
	errSessionRevoked   = newAPIError(401, CodeSessionRevoked, "session revoked")
	errRefreshLimit     = newAPIError(403, CodeRefreshLimitReached, "session has reached its refresh limit; start a new session")
	errSessionNotFound  = newAPIError(404, CodeSessionNotFound, "session not found or expired")
	errNotFound         = newAPIError(404, CodeNotFound, "not found")
	errMethod           = newAPIError(405, CodeMethodNotAllowed, "method not allowed")
	errTooLarge         = newAPIError(413, CodePayloadTooLarge, "request body too large")
	errRateLimited      = newAPIError(429, CodeRateLimited, "too many token requests; try again later")
	errRefreshTooSoon   = newAPIError(429, CodeRefreshTooSoon, "refresh requested too soon after the last token")
	errTooManySessions  = newAPIError(429, CodeTooManySessions, "too many open sessions for this user")
	errUpstream         = newAPIError(502, CodeUpstreamError, "the token issuer failed; try again")
	errUpstreamLimited  = newAPIError(503, CodeUpstreamRateLimited, "the token issuer is rate limiting this server; try again later")
	errUpstreamBusy     = newAPIError(503, CodeUpstreamBusy, "token budget exhausted; try again later")
	errUpstreamTimeout  = newAPIError(504, CodeUpstreamTimeout, "the token issuer did not answer in time")
	errStoreUnavailable = newAPIError(503, CodeStoreUnavailable, "a backing store is unavailable; try again later")
	errUnavailable      = newAPIError(503, CodeUnavailable, "shutting down")
	errInternal         = newAPIError(500, CodeInternal, "internal error")
)

// retrySeconds rounds a wait up to whole seconds, at least one.
func retrySeconds(d time.Duration) int64 {
	s := int64((d + time.Second - 1) / time.Second)
	return max(s, 1)
}

// writeError answers e; retry > 0 adds Retry-After and "retryAfter".
func (h *Handler) writeError(w http.ResponseWriter, tls bool, e *apiError, retry time.Duration) {
	hd := w.Header()
	setSecurityHeaders(hd, tls)
	buf := make([]byte, 0, len(e.prefix)+24)
	buf = append(buf, e.prefix...)
	if retry > 0 {
		secs := retrySeconds(retry)
		hd["Retry-After"] = []string{strconv.FormatInt(secs, 10)}
		buf = append(buf, `,"retryAfter":`...)
		buf = strconv.AppendInt(buf, secs, 10)
	}
	buf = append(buf, '}')
	if e.status == http.StatusRequestEntityTooLarge {
		hd["Connection"] = hdrCloseConn // the rest of the body is not read
	}
	w.WriteHeader(e.status)
	_, _ = w.Write(buf)
}

// appendToken writes the success body.
func appendToken(b []byte, tok Token, now time.Time, sessionID string) []byte {
	expiresIn := max(int64(tok.ExpiresAt.Sub(now)/time.Second), 0)
	b = append(b, `{"success":true,"token":`...)
	b = appendJSONString(b, tok.Value)
	b = append(b, `,"expiresAt":`...)
	b = strconv.AppendInt(b, tok.ExpiresAt.UnixMilli(), 10)
	b = append(b, `,"expiresIn":`...)
	b = strconv.AppendInt(b, expiresIn, 10)
	b = append(b, `,"serverTime":`...)
	b = strconv.AppendInt(b, now.UnixMilli(), 10)
	b = append(b, `,"sessionId":`...)
	b = appendJSONString(b, sessionID)
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string, escaping what JSON requires
// and the HTML-sensitive <, > and &; invalid UTF-8 becomes U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// isDeadline reports whether err is a timeout of the upstream call.
func isDeadline(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.Is(err, errDeadline) || (errors.As(err, &ne) && ne.Timeout())
}

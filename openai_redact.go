package realtimeauth

import (
	"errors"
	"net/http"
	"net/url"

	"github.com/realtimeauth/realtimeauth/internal/redact"
)

// This file keeps the API key out of everything the minter hands to a log,
// an error or an event, whatever the upstream does with it: an upstream can
// echo the key in its error message, in a header or in x-request-id, and
// encode any of its characters on the way.

// Bounds of the upstream text kept for logs.
const (
	maxRequestID   = 128
	maxRedirectLoc = 100
)

// redact removes every occurrence of the API key from s, however each of
// its characters is written (internal/redact): as itself, as a JSON escape
// (\uXXXX with hex of either case, \/ \" \\), as a backslash escape \xXX,
// or URL-escaped (%XX of either case, as url.QueryEscape and url.PathEscape
// write it). So the raw key, json.Marshal's form (\u0026 for &), PHP's (\/
// for /), a fully \u-escaped key and QueryEscape's and PathEscape's forms
// are all caught, and so is any mix of them. It is run on the text before
// it is cut, so a key straddling the cut leaves no prefix behind.
func (m *openAIMinter) redact(s string) string { return redact.Key(s, m.apiKey) }

// holdsKey reports whether s carries the API key in any form redact
// recognises. An upstream answer that does (a token value, a call ID, an
// SDP answer) is refused: it would hand the key to the browser.
func (m *openAIMinter) holdsKey(s string) bool { return m.redact(s) != s }

// redactedError stands for an error whose text carries the key. It does not
// unwrap to it, so errors.As cannot hand the raw text to a logger either;
// it answers errors.Is and Timeout as the error it hides, which is all the
// handler asks of a cause.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string        { return e.msg }
func (e *redactedError) Is(target error) bool { return errors.Is(e.err, target) }
func (e *redactedError) Timeout() bool {
	var t interface{ Timeout() bool }
	return errors.As(e.err, &t) && t.Timeout()
}

// scrubErr returns err, or, when its text carries the key in any form, an
// error with the same chain whose text is redacted.
func (m *openAIMinter) scrubErr(err error) error {
	if err == nil {
		return nil
	}
	s := err.Error()
	if r := m.redact(s); r != s {
		return &redactedError{msg: r, err: err}
	}
	return err
}

// headerForLog makes an upstream header value fit for a log line: the key
// redacted (first, so that no cut leaves part of it), then cut to max bytes
// of a conservative charset (letters, digits and - _ . :), anything else
// written as _. OpenAI's request IDs (req_…) pass unchanged.
func (m *openAIMinter) headerForLog(v string, max int) string {
	v = m.redact(v)
	if len(v) > max {
		v = v[:max]
	}
	b := []byte(v)
	for i, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			b[i] = '_'
		}
	}
	return string(b)
}

// requestID is the upstream's x-request-id as kept for logs (UpstreamError.RequestID).
func (m *openAIMinter) requestID(h http.Header) string {
	return m.headerForLog(h.Get("x-request-id"), maxRequestID)
}

// redirectTarget names where a refused redirect pointed, for the log: the
// host (and port) of its Location only, never its path or query, which
// could carry anything.
func (m *openAIMinter) redirectTarget(resp *http.Response) string {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return "no Location"
	}
	u, err := url.Parse(loc)
	if err != nil {
		return "an unparsable Location"
	}
	if resp.Request != nil && resp.Request.URL != nil {
		u = resp.Request.URL.ResolveReference(u)
	}
	if u.Host == "" {
		return "an unusable Location"
	}
	return m.headerForLog(u.Scheme, 8) + "://" + m.headerForLog(u.Host, maxRedirectLoc)
}

package realtimeauth

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
)

// This file keeps the API key out of everything the minter hands to a log,
// an error or an event, whatever the upstream does with it: an upstream can
// echo the key in its error message, in a header or in x-request-id, and
// encode any of its characters on the way.

// redactedMark replaces the key wherever it is found.
const redactedMark = "[redacted]"

// Bounds of the upstream text kept for logs.
const (
	maxRequestID   = 128
	maxRedirectLoc = 100
)

// redact removes every occurrence of the API key from s, however each of
// its characters is written: as itself, as a JSON escape (\uXXXX with hex of
// either case, \/ \" \\), as a backslash escape \xXX, or URL-escaped (%XX
// of either case, as url.QueryEscape and url.PathEscape write it). So the raw
// key, json.Marshal's form (\u0026 for &), PHP's (\/ for /), a fully
// \u-escaped key and QueryEscape's and PathEscape's forms are all caught,
// and so is any mix of them. It is run on the text before it is cut, so a
// key straddling the cut leaves no prefix behind.
func (m *OpenAIMinter) redact(s string) string { return redactKey(s, m.apiKey) }

// Redact returns s with every occurrence of secret replaced by
// "[redacted]", however each of its characters is written (raw, JSON-,
// backslash- or URL-escaped, or any mix), as OpenAIMinter redacts its API
// key from what it logs. It is for modules that log an upstream's words
// next to a request that carried the key (the sideband's handshake
// errors). A secret of anything but printable ASCII without backslash is
// only replaced where it is written as itself.
func Redact(s, secret string) string {
	for i := 0; i < len(secret); i++ {
		if c := secret[i]; c <= ' ' || c > '~' || c == '\\' {
			return strings.ReplaceAll(s, secret, redactedMark)
		}
	}
	return redactKey(s, secret)
}

// redactKey is redact for any key of printable ASCII without backslash
// (what NewOpenAIMinter accepts).
func redactKey(s, key string) string {
	if key == "" || s == "" {
		return s
	}
	var b strings.Builder
	last := 0
	for i := 0; i < len(s); {
		if n := matchKey(s[i:], key); n > 0 {
			b.WriteString(s[last:i])
			b.WriteString(redactedMark)
			i += n
			last = i
			continue
		}
		i++
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// holdsKey reports whether s carries the API key in any form redact
// recognises. An upstream answer that does (a token value, a call ID, an
// SDP answer) is refused: it would hand the key to the browser.
func (m *OpenAIMinter) holdsKey(s string) bool { return m.redact(s) != s }

// matchKey returns the length of the encoding of key at the start of s, or
// 0 if s does not start with one. An encoded character that could also be
// the literal character (a % in the key) is tried both ways; at most one
// way survives the next character, so the search stays linear in the key
// (NewOpenAIMinter refuses a backslash, the one byte that would not).
func matchKey(s, key string) int {
	if key == "" {
		return 0
	}
	c := key[0]
	for _, n := range encodedLens(s, c) {
		if n == 0 {
			continue
		}
		if len(key) == 1 {
			return n
		}
		if rest := matchKey(s[n:], key[1:]); rest > 0 {
			return n + rest
		}
	}
	return 0
}

// encodedLens returns the lengths of the encodings of the ASCII byte c that
// s starts with (0 for none): the literal byte, and one escape. An escape
// may itself have been escaped, as quoting an error text does (strconv.Quote
// writes \u0026 for \u0026) and as URL-escaping twice does (%2526): any run
// of backslashes before a \u or \x escape, and any number of 25s after a %,
// are taken as part of it.
func encodedLens(s string, c byte) [4]int {
	var out [4]int
	if s == "" {
		return out
	}
	if s[0] == c {
		out[0] = 1
	}
	switch s[0] {
	case '\\':
		n := 1
		if len(s) >= 2 && s[1] == c && (c == '/' || c == '"' || c == '\\') {
			out[n] = 2
			n++
		}
		i := 1
		for i < len(s) && s[i] == '\\' {
			i++
		}
		e := s[i:]
		switch {
		case len(e) >= 5 && e[0] == 'u' && e[1] == '0' && e[2] == '0' && hexByte(e[3], e[4]) == int(c):
			out[n] = i + 5
		case len(e) >= 3 && e[0] == 'x' && hexByte(e[1], e[2]) == int(c):
			out[n] = i + 3
		case len(e) >= 1 && e[0] == c && (c == '/' || c == '"') && i > 1:
			out[n] = i + 1
		}
	case '%':
		// Every depth that decodes to c is a candidate: %25 is a % and
		// also the start of a twice-escaped byte.
		n := 1
		for i := 1; len(s) >= i+2 && n < len(out); i += 2 {
			if hexByte(s[i], s[i+1]) == int(c) {
				out[n] = i + 2
				n++
			}
			if s[i:i+2] != "25" {
				break
			}
		}
	}
	return out
}

// hexByte decodes two hex digits of either case, or returns -1.
func hexByte(hi, lo byte) int {
	h, l := unhex(hi), unhex(lo)
	if h < 0 || l < 0 {
		return -1
	}
	return h<<4 | l
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

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
func (m *OpenAIMinter) scrubErr(err error) error {
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
func (m *OpenAIMinter) headerForLog(v string, max int) string {
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
func (m *OpenAIMinter) requestID(h http.Header) string {
	return m.headerForLog(h.Get("x-request-id"), maxRequestID)
}

// redirectTarget names where a refused redirect pointed, for the log: the
// host (and port) of its Location only, never its path or query, which
// could carry anything.
func (m *OpenAIMinter) redirectTarget(resp *http.Response) string {
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

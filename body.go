package realtimeauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"unicode/utf8"
)

// readBody reads the request body within Limits.MaxBodyBytes into k.body; a
// body that is not empty must be of mediaType. A declared length is judged
// before reading; a chunked body is judged by what it holds, so an empty
// one needs no media type.
func (h *Handler) readBody(k *request, mediaType string) (refusal, bool) {
	r := k.r
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return 0, true
	}
	if r.ContentLength > h.cfg.lim.MaxBodyBytes {
		return refTooLarge, false
	}
	typeOK := isMediaType(r.Header.Get("Content-Type"), mediaType)
	if r.ContentLength > 0 && !typeOK {
		return refMediaType, false
	}
	b, err := io.ReadAll(http.MaxBytesReader(k.w, r.Body, h.cfg.lim.MaxBodyBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return refTooLarge, false
		}
		return refBodyRead, false
	}
	if len(b) > 0 && !typeOK {
		return refMediaType, false
	}
	k.body = b
	return 0, true
}

// isMediaType reports whether the Content-Type ct names the media type
// want, whatever its parameters (a charset).
func isMediaType(ct, want string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == want
}

// isJSONObject reports whether b is one valid JSON object in valid UTF-8.
func isJSONObject(b []byte) bool {
	t := bytes.TrimLeft(b, " \t\r\n")
	return len(t) > 0 && t[0] == '{' && utf8.Valid(b) && json.Valid(b)
}

// parseTokenBody checks a token request's body: empty, or a JSON object
// (whose fields only a WithSessionConfig hook reads).
func parseTokenBody(k *request) (refusal, bool) {
	if len(k.body) > 0 && !isJSONObject(k.body) {
		return refBadJSON, false
	}
	return 0, true
}

// parseRefreshBody takes the sessionId out of a refresh body: a JSON object
// with one string "sessionId" among any other fields. A duplicated
// "sessionId" key is refused rather than resolved.
func parseRefreshBody(k *request) (refusal, bool) {
	if len(bytes.TrimSpace(k.body)) == 0 {
		return refMissingSessionID, false
	}
	if !isJSONObject(k.body) {
		return refBadRefreshBody, false
	}
	dec := json.NewDecoder(bytes.NewReader(k.body))
	_, _ = dec.Token() // the object's {, which isJSONObject saw
	var sid string
	seen := false
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return refBadRefreshBody, false
		}
		if key, _ := t.(string); key != "sessionId" {
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return refBadRefreshBody, false
			}
			continue
		}
		t, err = dec.Token()
		s, isString := t.(string)
		if seen || err != nil || !isString {
			return refBadRefreshBody, false
		}
		sid, seen = s, true
	}
	switch {
	case sid == "":
		return refMissingSessionID, false
	case !validSessionID(sid):
		return refBadSessionID, false
	}
	k.sessionID = sid
	return 0, true
}

// validSessionID reports whether id has the form of the session IDs the
// stores issue: a UUID in canonical lower-case form (122 random bits).
func validSessionID(id string) bool {
	if len(id) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := id[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
		}
	}
	return true
}

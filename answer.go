package realtimeauth

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// Header values, shared by every response. Each slice has len == cap, so a
// later Header.Add copies instead of writing into the shared array.
var (
	hdrJSON       = []string{"application/json"}
	hdrNoStore    = []string{"no-store"}
	hdrNoCache    = []string{"no-cache"}
	hdrNosniff    = []string{"nosniff"}
	hdrDeny       = []string{"DENY"}
	hdrCSP        = []string{"default-src 'none'; frame-ancestors 'none'"}
	hdrNoReferrer = []string{"no-referrer"}
	hdrHSTS       = []string{"max-age=63072000; includeSubDomains"}
	hdrVaryOrigin = []string{"Origin"}
	hdrAllowPOST  = []string{"OPTIONS, POST"}
	hdrAllowGET   = []string{"GET, HEAD"}
	hdrCloseConn  = []string{"close"}
)

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

// errorAnswer is the body of every error answer.
type errorAnswer struct {
	Success    bool   `json:"success"`
	Error      string `json:"error"`
	Code       Code   `json:"code"`
	RetryAfter int64  `json:"retryAfter,omitempty"`
}

// tokenAnswer is the body of a token or refresh answer: the original
// service's fields, then mode and model.
type tokenAnswer struct {
	Success    bool   `json:"success"`
	Token      string `json:"token"`
	ExpiresAt  int64  `json:"expiresAt"` // Unix ms
	ExpiresIn  int64  `json:"expiresIn"` // whole seconds
	ServerTime int64  `json:"serverTime"`
	SessionID  string `json:"sessionId"`
	Mode       string `json:"mode"`
	Model      string `json:"model,omitempty"`
}

// retrySeconds rounds a wait up to whole seconds, at least one.
func retrySeconds(d time.Duration) int64 {
	s := int64((d + time.Second - 1) / time.Second)
	return max(s, 1)
}

// writeError answers row e; retry > 0 adds Retry-After and "retryAfter".
func writeError(w http.ResponseWriter, tls bool, e row, retry time.Duration) {
	hd := w.Header()
	setSecurityHeaders(hd, tls)
	body := errorAnswer{Error: e.msg, Code: e.code}
	if retry > 0 {
		body.RetryAfter = retrySeconds(retry)
		hd["Retry-After"] = []string{strconv.FormatInt(body.RetryAfter, 10)}
	}
	if e.status == http.StatusRequestEntityTooLarge {
		hd["Connection"] = hdrCloseConn // the rest of the body is not read
	}
	writeJSON(w, e.status, body)
}

// writeToken answers the token tok of session k.sessionID.
func writeToken(k *request, tok Token, now time.Time) {
	setSecurityHeaders(k.w.Header(), k.client.tls)
	mode := tok.Mode
	if mode == "" {
		mode = modeRealtime
	}
	writeJSON(k.w, http.StatusOK, tokenAnswer{
		Success:    true,
		Token:      tok.Value,
		ExpiresAt:  tok.ExpiresAt.UnixMilli(),
		ExpiresIn:  max(int64(tok.ExpiresAt.Sub(now)/time.Second), 0),
		ServerTime: now.UnixMilli(),
		SessionID:  k.sessionID,
		Mode:       mode,
		Model:      tok.Model,
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil { // the answers are plain structs of strings and numbers
		panic(err)
	}
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

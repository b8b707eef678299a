package realtimeauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/time/rate"
)

var errDeadline = context.DeadlineExceeded

// call is one token or refresh request on its way through the handler.
type call struct {
	w         http.ResponseWriter
	r         *http.Request
	now       time.Time
	client    client
	subject   string
	sessionID string
}

// ServeHTTP routes the request to the token, refresh or health endpoint.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, h.base)
	if !ok {
		rest = ""
	}
	switch rest {
	case "/token":
		h.serveIssue(w, r, false)
	case "/refresh-token":
		h.serveIssue(w, r, true)
	case "/health":
		h.serveHealth(w, r)
	case "/compatibility":
		h.serveCompatibility(w, r)
	case "/client.js":
		h.serveStatic(w, r, &clientScript)
	case "/client.d.ts":
		h.serveStatic(w, r, &clientTypes)
	default:
		_, forwardedTLS := h.ips.clientAddr(r)
		h.writeError(w, r.TLS != nil || forwardedTLS, errNotFound, 0)
	}
}

func (h *Handler) newCall(w http.ResponseWriter, r *http.Request) call {
	addr, forwardedTLS := h.ips.clientAddr(r)
	ip := addrString(addr, r.RemoteAddr)
	key := ip
	if addr.Is6() {
		key = limitKey(addr)
	}
	return call{
		w:      w,
		r:      r,
		now:    h.now(),
		client: client{ip: ip, key: key, tls: r.TLS != nil || forwardedTLS},
	}
}

func (h *Handler) serveIssue(w http.ResponseWriter, r *http.Request, refresh bool) {
	k := h.newCall(w, r)
	if r.Method == http.MethodOptions {
		h.preflight(&k)
		return
	}
	if r.Method != http.MethodPost {
		w.Header()["Allow"] = hdrAllowPOST
		h.writeError(w, k.client.tls, errMethod, 0)
		return
	}
	status := h.issue(&k, refresh)
	h.m.request(k.now, status, h.now().Sub(k.now), refresh && status == http.StatusOK)
}

// issue runs the checks common to token and refresh requests, then the
// endpoint's own; it returns the status it answered.
func (h *Handler) issue(k *call, refresh bool) int {
	if h.closed.Load() {
		return h.deny(k, errUnavailable, 0, "", "", false)
	}
	if st, blocked := h.checkBlocked(k); blocked {
		return st
	}
	origin := k.r.Header.Get("Origin")
	if origin != "" {
		if !h.origins.allowed(origin) {
			return h.deny(k, errOrigin, 0, EventOriginRejected, SeverityMedium, true)
		}
		setActualCORSHeaders(k.w.Header(), k.r, h.cfg.allowCredentials)
	} else {
		k.w.Header()["Vary"] = hdrVaryOrigin
	}
	if h.cfg.authenticator != nil {
		sub, err := h.cfg.authenticator(k.r)
		if err != nil || sub == "" {
			return h.deny(k, errUnauthorized, 0, EventUnauthorized, SeverityMedium, true)
		}
		k.subject = sub
	}
	bp, e := h.readBody(k)
	if e != nil {
		return h.deny(k, e, 0, EventInvalidRequest, SeverityLow, e != errMediaType)
	}
	defer putBody(bp)
	if refresh {
		return h.refresh(k, *bp)
	}
	return h.token(k, *bp)
}

func (h *Handler) checkBlocked(k *call) (int, bool) {
	if h.guard == nil {
		return 0, false
	}
	d, err := h.guard.Blocked(k.r.Context(), k.client.key, k.now)
	if err != nil {
		h.log.LogAttrs(k.r.Context(), levelWarn, "realtimeauth: abuse guard failed", attrErr(err))
		return h.deny(k, errStoreUnavailable, 0, EventStoreError, SeverityHigh, false), true
	}
	if d > 0 {
		// Not an event per request: client_blocked was logged once, when
		// the block began.
		h.writeError(k.w, k.client.tls, errBlocked, d)
		return errBlocked.status, true
	}
	return 0, false
}

// strike records a strike against the client and logs client_blocked when
// it starts a block.
func (h *Handler) strike(k *call) {
	if h.guard == nil {
		return
	}
	d, started, err := h.guard.Strike(k.r.Context(), k.client.key, k.now)
	if err != nil {
		h.log.LogAttrs(k.r.Context(), levelWarn, "realtimeauth: abuse guard failed", attrErr(err))
		return
	}
	if started {
		h.emit(k.r.Context(), h.event(k, EventClientBlocked, SeverityHigh, errBlocked, d, "too many strikes"))
	}
}

// deny answers e, after an optional strike and event.
func (h *Handler) deny(k *call, e *apiError, retry time.Duration, event string, sev Severity, strike bool) int {
	if strike {
		h.strike(k)
	}
	if event != "" {
		h.emit(k.r.Context(), h.event(k, event, sev, e, retry, ""))
	}
	h.writeError(k.w, k.client.tls, e, retry)
	return e.status
}

func (h *Handler) event(k *call, name string, sev Severity, e *apiError, retry time.Duration, detail string) Event {
	ev := Event{
		Name:       name,
		Time:       k.now,
		Severity:   sev,
		ClientIP:   k.client.ip,
		UserAgent:  k.r.UserAgent(),
		Subject:    k.subject,
		SessionID:  k.sessionID,
		RetryAfter: retry,
		Detail:     detail,
	}
	if e != nil {
		ev.Status, ev.Code = e.status, e.code
		if detail == "" {
			ev.Detail = e.msg
		}
	}
	return ev
}

func (h *Handler) token(k *call, body []byte) int {
	ctx := k.r.Context()
	if len(body) > 0 && !isJSONObject(body) {
		return h.deny(k, errBadJSON, 0, EventInvalidRequest, SeverityLow, true)
	}
	sessCfg, e := h.sessionConfig(k, body)
	if e != nil {
		return h.deny(k, e, 0, EventInvalidRequest, SeverityLow, false)
	}
	res, st := h.reserveUpstream(k)
	if res == nil && st != 0 {
		return st
	}
	allow := []Allowance{{Key: "n:" + k.client.key, Limit: h.cfg.rateLimit, Window: h.cfg.rateWindow}}
	if h.cfg.subjectLimit != 0 {
		allow = append(allow, Allowance{Key: "s:" + k.subject, Limit: h.cfg.subjectLimit, Window: h.cfg.subjectWindow})
	}
	sess, _, err := h.store.Open(ctx, OpenRequest{
		Now:           k.now,
		ExpiresAt:     k.now.Add(h.cfg.sessionTTL),
		ClientIP:      k.client.ip,
		Client:        k.client.key,
		Subject:       k.subject,
		Allowances:    allow,
		MaxPerSubject: h.cfg.maxSessionsPerSubject,
		MaxSessions:   h.cfg.memoryMaxKeys,
	})
	if err != nil {
		cancelReservation(res, k.now)
		var le *LimitError
		switch {
		case errors.As(err, &le):
			h.m.limiterResult(k.now, true)
			return h.deny(k, errRateLimited, max(le.RetryAfter, time.Millisecond), EventRateLimitExceeded, SeverityMedium, true)
		case errors.Is(err, ErrTooManySessions), errors.Is(err, ErrStoreFull):
			h.m.storeResult(k.now, true)
			return h.deny(k, errTooManySessions, 0, EventTooManySessions, SeverityMedium, false)
		}
		return h.storeFailed(k, err)
	}
	k.sessionID = sess.ID
	h.m.storeResult(k.now, true)
	tok, e, retry := h.mint(k, sessCfg)
	if e != nil {
		if err := h.store.Delete(context.WithoutCancel(ctx), k.sessionID); err != nil {
			h.log.LogAttrs(ctx, levelWarn, "realtimeauth: could not delete a session whose mint failed", attrErr(err))
		}
		return h.deny(k, e, retry, "", "", false)
	}
	h.writeToken(k, tok)
	h.emit(ctx, h.event(k, EventTokenIssued, SeverityInfo, nil, 0, ""))
	return http.StatusOK
}

func (h *Handler) refresh(k *call, body []byte) int {
	ctx := k.r.Context()
	sid, e := parseRefreshBody(body)
	if e != nil {
		return h.deny(k, e, 0, EventInvalidRequest, SeverityLow, true)
	}
	k.sessionID = sid
	res, st := h.reserveUpstream(k)
	if res == nil && st != 0 {
		return st
	}
	minInterval := h.cfg.minRefreshInterval
	sess, err := h.store.Refresh(ctx, RefreshRequest{
		Now:          k.now,
		ID:           sid,
		ClientIP:     k.client.ip,
		Subject:      k.subject,
		MaxRefreshes: h.cfg.maxRefreshes,
		MinInterval:  minInterval,
	})
	if err != nil {
		cancelReservation(res, k.now)
		switch {
		case errors.Is(err, ErrSessionNotFound):
			h.m.storeResult(k.now, true)
			return h.deny(k, errSessionNotFound, 0, EventSessionNotFound, SeverityMedium, true)
		case errors.Is(err, ErrSessionRevoked):
			h.m.storeResult(k.now, true)
			return h.deny(k, errSessionRevoked, 0, EventSessionRevoked, SeverityMedium, false)
		case errors.Is(err, ErrSessionMismatch):
			h.m.storeResult(k.now, true)
			return h.deny(k, errSessionMismatch, 0, EventSessionMismatch, SeverityHigh, true)
		case errors.Is(err, ErrRefreshLimit):
			h.m.storeResult(k.now, true)
			return h.deny(k, errRefreshLimit, 0, EventRefreshLimitReached, SeverityLow, false)
		case errors.Is(err, ErrRefreshTooSoon):
			h.m.storeResult(k.now, true)
			retry := sess.LastIssuedAt.Add(minInterval).Sub(k.now)
			return h.deny(k, errRefreshTooSoon, max(retry, time.Millisecond), EventRefreshTooSoon, SeverityLow, false)
		}
		return h.storeFailed(k, err)
	}
	h.m.storeResult(k.now, true)
	k.subject = sess.Subject
	sessCfg, e := h.sessionConfig(k, body)
	configRefused := e != nil
	if configRefused {
		cancelReservation(res, k.now) // nothing will be minted
	}
	var tok Token
	var retry time.Duration
	if e == nil {
		tok, e, retry = h.mint(k, sessCfg)
	}
	if e == nil {
		h.writeToken(k, tok)
		h.emit(ctx, h.event(k, EventTokenRefreshed, SeverityInfo, nil, 0, ""))
		return http.StatusOK
	}
	// No token was issued: give the refresh back before answering, so that
	// a client retrying at once finds it. LastIssuedAt moves to where the
	// interval has already passed (it had, or the reservation would have
	// failed), unless a newer refresh has replaced ours meanwhile.
	err = h.store.GiveBack(context.WithoutCancel(ctx), sid, k.now, k.now.Add(-minInterval))
	if err != nil {
		h.log.LogAttrs(ctx, levelWarn, "realtimeauth: could not give back a refresh whose mint failed", attrErr(err))
	}
	if configRefused {
		return h.deny(k, e, 0, EventInvalidRequest, SeverityLow, false)
	}
	return h.deny(k, e, retry, "", "", false) // mint logged its own event
}

func (h *Handler) storeFailed(k *call, err error) int {
	h.m.storeResult(k.now, false)
	h.log.LogAttrs(k.r.Context(), levelWarn, "realtimeauth: session store failed", attrErr(err))
	return h.deny(k, errStoreUnavailable, 0, EventStoreError, SeverityHigh, false)
}

// reserveUpstream takes one mint from the upstream budget. It returns
// (nil, 0) when there is no budget, (res, 0) when it reserved, and
// (nil, status) when it answered upstream_busy.
func (h *Handler) reserveUpstream(k *call) (*rate.Reservation, int) {
	if h.upstream == nil {
		return nil, 0
	}
	res := h.upstream.ReserveN(k.now, 1)
	if d := res.DelayFrom(k.now); d > 0 {
		res.CancelAt(k.now)
		return nil, h.deny(k, errUpstreamBusy, d, EventUpstreamBusy, SeverityHigh, false)
	}
	return res, 0
}

func cancelReservation(res *rate.Reservation, now time.Time) {
	if res != nil {
		res.CancelAt(now)
	}
}

func (h *Handler) sessionConfig(k *call, body []byte) (json.RawMessage, *apiError) {
	if h.cfg.sessionConfig == nil {
		return nil, nil
	}
	k.r.Body = io.NopCloser(bytes.NewReader(body))
	cfg, err := h.cfg.sessionConfig(k.r, k.subject)
	if err != nil {
		h.log.LogAttrs(k.r.Context(), levelInfo, "realtimeauth: session configuration refused", attrErr(err))
		if errors.Is(err, ErrForbidden) {
			return nil, errForbidden
		}
		return nil, errSessionConfig
	}
	if cfg != nil && !isJSONObject(cfg) {
		h.log.LogAttrs(k.r.Context(), levelError, "realtimeauth: WithSessionConfig returned something other than a JSON object")
		return nil, errInternal
	}
	return cfg, nil
}

// mint calls the Minter within the upstream timeout and maps its failure.
func (h *Handler) mint(k *call, sessCfg json.RawMessage) (Token, *apiError, time.Duration) {
	parent := k.r.Context()
	ctx, cancel := context.WithTimeout(parent, h.cfg.upstreamTimeout)
	defer cancel()
	start := h.now()
	tok, err := h.minter.Mint(ctx, MintRequest{
		SessionID: k.sessionID,
		ClientIP:  k.client.ip,
		Subject:   k.subject,
		TTL:       h.cfg.tokenTTL,
		Session:   sessCfg,
	})
	latency := h.now().Sub(start)
	if err == nil && (tok.Value == "" || !tok.ExpiresAt.After(h.now())) {
		err = &UpstreamError{Message: "the minter returned an empty or already expired token"}
	}
	if err == nil {
		h.m.mint(k.now, latency, true)
		return tok, nil, 0
	}
	if parent.Err() != nil {
		// The client went away; that says nothing about the upstream.
		return Token{}, errClientGone, 0
	}
	h.m.mint(k.now, latency, false)
	e, retry := errUpstream, time.Duration(0)
	var ue *UpstreamError
	errors.As(err, &ue) // for the log, whatever the answer
	switch {
	case isDeadline(err):
		e = errUpstreamTimeout
	case ue != nil && ue.StatusCode == http.StatusTooManyRequests:
		e, retry = errUpstreamLimited, max(ue.RetryAfter, time.Second)
	}
	attrs := []any{"code", e.code, "latency", latency}
	if ue != nil {
		attrs = append(attrs, "upstream_status", ue.StatusCode, "request_id", ue.RequestID,
			"attempts", ue.Attempts, "upstream_message", ue.Message)
		if ue.Err != nil {
			attrs = append(attrs, "cause", ue.Err.Error())
		}
	} else {
		attrs = append(attrs, "error", err.Error())
	}
	h.log.Warn("realtimeauth: mint failed", attrs...)
	h.emit(parent, h.event(k, EventUpstreamError, SeverityHigh, e, retry, ""))
	return Token{}, e, retry
}

var errClientGone = newAPIError(499, CodeClientClosedRequest, "the client closed the request")

func (h *Handler) writeToken(k *call, tok Token) {
	setSecurityHeaders(k.w.Header(), k.client.tls)
	bp := bodyPool.Get().(*[]byte)
	buf := appendToken((*bp)[:0], tok, h.now(), k.sessionID)
	k.w.WriteHeader(http.StatusOK)
	_, _ = k.w.Write(buf) // Write copies, so the buffer goes back to the pool
	*bp = buf
	putBody(bp)
}

// preflight answers a CORS preflight, or a plain OPTIONS.
func (h *Handler) preflight(k *call) {
	hd := k.w.Header()
	origin := k.r.Header.Get("Origin")
	if origin == "" || k.r.Header.Get("Access-Control-Request-Method") == "" {
		hd["Allow"] = hdrAllowPOST
		hd["Cache-Control"] = hdrNoStore
		k.w.WriteHeader(http.StatusNoContent)
		return
	}
	if _, blocked := h.checkBlocked(k); blocked {
		return
	}
	if !h.origins.allowed(origin) {
		h.deny(k, errOrigin, 0, EventOriginRejected, SeverityMedium, true)
		return
	}
	hd["Cache-Control"] = hdrNoStore
	hd["X-Content-Type-Options"] = hdrNosniff
	h.cors.HandlerFunc(k.w, k.r) // writes 204 with the CORS headers
}

// Body buffers are pooled: most bodies are empty or a few bytes.
var bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

var noBody = new([]byte)

func putBody(bp *[]byte) {
	if bp != noBody && cap(*bp) <= 64<<10 {
		*bp = (*bp)[:0]
		bodyPool.Put(bp)
	}
}

// readBody reads the request body within WithMaxBodyBytes.
func (h *Handler) readBody(k *call) (*[]byte, *apiError) {
	r := k.r
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return noBody, nil
	}
	if r.ContentLength > h.cfg.maxBodyBytes {
		return nil, errTooLarge
	}
	// A declared length is refused before reading; a chunked body only if
	// it turns out not to be empty.
	jsonType := isJSONMediaType(r.Header.Get("Content-Type"))
	if r.ContentLength > 0 && !jsonType {
		return nil, errMediaType
	}
	bp := bodyPool.Get().(*[]byte)
	b := (*bp)[:0]
	rd := http.MaxBytesReader(k.w, r.Body, h.cfg.maxBodyBytes)
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := rd.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			*bp = b
			putBody(bp)
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return nil, errTooLarge
			}
			return nil, errBodyRead
		}
	}
	*bp = b
	if len(b) > 0 && !jsonType {
		putBody(bp)
		return nil, errMediaType
	}
	return bp, nil
}

func isJSONMediaType(ct string) bool {
	if ct == "application/json" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/json"
}

// isJSONObject reports whether b is one valid JSON object in valid UTF-8.
func isJSONObject(b []byte) bool {
	t := bytes.TrimLeft(b, " \t\r\n")
	return len(t) > 0 && t[0] == '{' && utf8.Valid(b) && json.Valid(b)
}

// parseRefreshBody extracts a well-formed sessionId from a refresh body.
// A duplicated "sessionId" key is refused rather than resolved.
func parseRefreshBody(b []byte) (string, *apiError) {
	if len(bytes.TrimSpace(b)) == 0 {
		return "", errMissingSessionID
	}
	if !isJSONObject(b) {
		return "", errBadRefreshBody
	}
	if sid, ok := singleSessionID(b); ok {
		return checkSessionID(sid)
	}
	return decodeRefreshBody(b)
}

// decodeRefreshBody is parseRefreshBody's general path, for a valid JSON
// object of any shape.
func decodeRefreshBody(b []byte) (string, *apiError) {
	dec := json.NewDecoder(bytes.NewReader(b))
	if _, err := dec.Token(); err != nil { // {
		return "", errBadRefreshBody
	}
	var sid string
	seen := false
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return "", errBadRefreshBody
		}
		if key, _ := t.(string); key != "sessionId" {
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return "", errBadRefreshBody
			}
			continue
		}
		if seen {
			return "", errBadRefreshBody
		}
		seen = true
		t, err = dec.Token()
		s, ok := t.(string)
		if err != nil || !ok {
			return "", errBadRefreshBody
		}
		sid = s
	}
	return checkSessionID(sid)
}

func checkSessionID(sid string) (string, *apiError) {
	if sid == "" {
		return "", errMissingSessionID
	}
	if !ValidSessionID(sid) {
		return "", errBadSessionID
	}
	return sid, nil
}

// singleSessionID recognises, without a decoder, the body a client
// normally sends: {"sessionId":"…"} with optional whitespace and no
// escape in the value. b must already be a valid JSON object; anything
// else reports false and takes the general path, so the result is the
// same as the decoder's.
func singleSessionID(b []byte) (string, bool) {
	const ws = " \t\r\n"
	rest := bytes.TrimLeft(b, ws)
	for _, want := range []string{"{", `"sessionId"`, ":", `"`} {
		var ok bool
		if rest, ok = bytes.CutPrefix(rest, []byte(want)); !ok {
			return "", false
		}
		if want != `"` {
			rest = bytes.TrimLeft(rest, ws)
		}
	}
	end := bytes.IndexByte(rest, '"')
	if end < 0 || bytes.IndexByte(rest[:end], '\\') >= 0 {
		return "", false
	}
	sid := rest[:end]
	if tail := bytes.TrimSpace(rest[end+1:]); len(tail) != 1 || tail[0] != '}' {
		return "", false
	}
	return string(sid), true
}

// ValidSessionID reports whether id has the form of the session IDs the
// handler issues: a UUID in canonical lower-case form (122 random bits).
func ValidSessionID(id string) bool {
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

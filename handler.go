package realtimeauth

import (
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/rs/cors"
)

// request is one request on its way through the handler.
type request struct {
	w      http.ResponseWriter
	r      *http.Request
	id     string // the request ID, echoed in X-Request-Id
	client client
	// start is when the request reached the handler; now is the time of
	// the latest decision (see admit).
	start, now time.Time
	subject    string
	sessionID  string
	body       []byte
	config     json.RawMessage // WithSessionConfig's choice
	session    Session         // as opened or refreshed by admit
	status     int             // the status answered
	allowances [5]Allowance    // what the store operation is charged against
	charged    []Allowance     // what it charged (in allowances), for undo's Refund
	chargedAt  time.Time       // and when
	evicted    []Session       // what Open evicted: announced once the mint succeeds, restored by undo
	idHeader   [1]string       // X-Request-Id's value, kept with the request
	cors       *cors.Cors      // nil: h.cors (the calls have their own)
	callSlot   string          // the call registry slot reserved (calls.go)
	latency    time.Duration   // how long the Minter's Mint or Call took (Event.Latency)
}

// ServeHTTP routes the request to one of the endpoints the package doc
// lists. Every answer carries the request's ID in X-Request-Id.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	k := &request{w: w, r: r, client: h.ips.client(r)}
	k.id = requestID(r, k.client.proxied)
	k.idHeader[0] = k.id
	w.Header()["X-Request-Id"] = k.idHeader[:]
	rest, ok := strings.CutPrefix(r.URL.Path, h.base)
	if !ok {
		rest = ""
	}
	switch rest {
	case "/token":
		h.serveIssue(k, kindToken)
	case "/refresh-token":
		h.serveIssue(k, kindRefresh)
	case "/health":
		h.serveHealth(w, r)
	case "/compatibility":
		h.serveCompatibility(w, r)
	case "/client.js":
		h.serveStatic(k, &clientScript)
	case "/client.d.ts":
		h.serveStatic(k, &clientTypes)
	case "/calls":
		h.serveCalls(k, "")
	default:
		if id, ok := strings.CutPrefix(rest, "/calls/"); ok {
			h.serveCalls(k, id)
			return
		}
		writeError(w, k.client.tls, errorTable[refNotFound], 0)
	}
}

func (h *Handler) serveIssue(k *request, kd *kind) {
	switch k.r.Method {
	case http.MethodOptions:
		h.preflight(k)
		return
	case http.MethodPost:
	default:
		k.w.Header()["Allow"] = hdrAllowPOST
		writeError(k.w, k.client.tls, errorTable[refMethod], 0)
		return
	}
	h.issue(k, kd)
	h.m.request(k.start, k.status, h.now().Sub(k.start), kd == kindRefresh && k.status == http.StatusOK)
}

// issue answers a token or refresh request: admission, the mint, the token.
func (h *Handler) issue(k *request, kd *kind) {
	if !h.admit(k, kd) {
		return
	}
	tok, now, ok := h.mint(k, kd)
	if !ok {
		return
	}
	h.announceEvicted(k)
	writeToken(k, tok, now)
	k.status = http.StatusOK
	k.now = now
	ev := h.newEvent(k, kd.issued, SeverityInfo)
	ev.Latency = k.latency
	h.emit(k, ev)
}

// preflight answers a CORS preflight, or a plain OPTIONS. A preflight from
// a blocked client or a refused origin is refused as the request would be.
func (h *Handler) preflight(k *request) {
	hd := k.w.Header()
	origin := k.r.Header.Get("Origin")
	if origin == "" || k.r.Header.Get("Access-Control-Request-Method") == "" {
		hd["Allow"] = hdrAllowPOST
		hd["Cache-Control"] = hdrNoStore
		k.w.WriteHeader(http.StatusNoContent)
		return
	}
	k.start = h.now()
	k.now = k.start
	if !h.checkBlocked(k) {
		return
	}
	if !h.origins.allowed(origin) {
		h.refuse(k, refOrigin, 0)
		return
	}
	hd["Cache-Control"] = hdrNoStore
	hd["X-Content-Type-Options"] = hdrNosniff
	h.corsFor(k).HandlerFunc(k.w, k.r) // writes 204 with the CORS headers
}

// maxProxyRequestID bounds an X-Request-Id taken from a trusted proxy.
const maxProxyRequestID = 128

// requestID returns the ID of request r: the X-Request-Id a trusted proxy
// set, when it is short and printable, or else a new random one.
func requestID(r *http.Request, proxied bool) string {
	if proxied {
		if id := r.Header.Get("X-Request-Id"); id != "" && len(id) <= maxProxyRequestID && printable(id) {
			return id
		}
	}
	var b [8]byte
	u := rand.Uint64() // an ID needs to be unique, not secret
	for i := range b {
		b[i] = byte(u >> (8 * i))
	}
	return hex.EncodeToString(b[:])
}

// printable reports whether s is visible ASCII, so that it cannot forge a
// log line or a header.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

package realtimeauth

import (
	"encoding/json"
	"net/http"
)

// The compatibility answers, built once. The original service's client
// asks {base}/compatibility before its first token and reads tier and
// features.realtimeVoice: on "realtime" it uses the Realtime API, on
// anything else (or a 404) it switches itself to its demo mode.
var (
	compatRealtime = []byte(`{"success":true,"tier":"realtime","features":{"realtimeVoice":true,"chatCompletion":false,"textToSpeech":false,"speechToText":false,"functionCalling":true},"limitations":[],"recommendations":[]}`)
	compatDev      = compatNone("dev mode: tokens are minted locally and do not connect to OpenAI")
	compatDown     = compatNone("the token issuer is failing; realtime voice is unavailable for now")
	compatClosed   = compatNone("this server is shutting down")
)

func compatNone(limitation string) []byte {
	b := []byte(`{"success":true,"tier":"none","features":{"realtimeVoice":false,"chatCompletion":false,"textToSpeech":false,"speechToText":false,"functionCalling":false},"limitations":[`)
	l, _ := json.Marshal(limitation)
	b = append(b, l...)
	return append(b, `],"recommendations":[]}`...)
}

// serveCompatibility answers what this server offers the original
// service's client: tier "realtime" with a real minter that is not down,
// tier "none" with every feature false in dev mode (NewDevMinter), when the
// minter is down (judged from the recent mints, as health judges it: the
// endpoint never calls the upstream) or after Close. Always 200: the
// client reads a non-2xx as "no such server" and the body as the answer.
func (h *Handler) serveCompatibility(w http.ResponseWriter, r *http.Request) {
	tls, done := h.readPrelude(w, r)
	if done {
		return
	}
	setSecurityHeaders(w.Header(), tls)
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(h.compatibility())
	}
}

func (h *Handler) compatibility() []byte {
	switch h.minter.(type) {
	case *devMinter:
		return compatDev
	}
	if h.closed.Load() {
		return compatClosed
	}
	h.m.mu.Lock()
	down := h.m.upstream.consecutive >= downAfter
	h.m.mu.Unlock()
	if down {
		return compatDown
	}
	return compatRealtime
}

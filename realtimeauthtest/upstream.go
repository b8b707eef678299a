package realtimeauthtest

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Upstream is a fake of OpenAI's Realtime REST API, for tests of the relay:
// serve it with httptest.NewServer and give the minter its URL (plus "/v1",
// say) as base URL. It answers, under any prefix:
//
//	POST …/realtime/client_secrets        {"value":"ek_fake_N","expires_at":…}
//	POST …/realtime/calls                 multipart sdp + session → 201, an SDP answer, Location /v1/realtime/calls/rtc_fake_N
//	POST …/realtime/calls/{id}/hangup     200, or 404 for a call that is not live
//	GET  …/realtime?call_id={id}          Sideband, or 404 when it is nil
//
// Every request must carry "Authorization: Bearer " + Key (or "api-key:
// Key"), else 401. It is safe for concurrent use.
type Upstream struct {
	// Key is the API key the fake accepts.
	Key string
	// Sideband serves the sideband WebSocket (GET …/realtime?call_id=…);
	// the fake has no WebSocket library of its own. Nil answers 404.
	Sideband http.Handler
	// Fail, when set, is asked first about every request: a status other
	// than 0 is answered with an OpenAI-style JSON error instead.
	Fail func(r *http.Request) int

	mu      sync.Mutex
	seq     int
	calls   []UpstreamCall
	hangups []string
	live    map[string]chan struct{}
}

// UpstreamCall is one call the fake placed.
type UpstreamCall struct {
	ID string
	// Offer and Session are the multipart form's sdp and session fields.
	Offer   string
	Session json.RawMessage
	// Header is the request's header.
	Header http.Header
}

// ServeHTTP implements http.Handler.
func (u *Upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+u.Key && r.Header.Get("api-key") != u.Key {
		upstreamError(w, http.StatusUnauthorized, "Incorrect API key provided")
		return
	}
	if u.Fail != nil {
		if st := u.Fail(r); st != 0 {
			upstreamError(w, st, "the fake was told to fail")
			return
		}
	}
	p := r.URL.Path
	switch {
	case r.Method == http.MethodPost && strings.HasSuffix(p, "/realtime/client_secrets"):
		u.mu.Lock()
		u.seq++
		n := u.seq
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"value":"ek_fake_%d","expires_at":%d}`, n, time.Now().Add(time.Minute).Unix())
	case r.Method == http.MethodPost && strings.HasSuffix(p, "/realtime/calls"):
		u.serveCall(w, r)
	case r.Method == http.MethodPost && strings.HasSuffix(p, "/hangup") && strings.Contains(p, "/realtime/calls/"):
		id := p[strings.LastIndex(p[:len(p)-len("/hangup")], "/")+1 : len(p)-len("/hangup")]
		u.mu.Lock()
		u.hangups = append(u.hangups, id)
		ch, ok := u.live[id]
		delete(u.live, id)
		u.mu.Unlock()
		if !ok {
			upstreamError(w, http.StatusNotFound, "call not found")
			return
		}
		close(ch)
		w.WriteHeader(http.StatusOK)
	case r.Method == http.MethodGet && strings.HasSuffix(p, "/realtime") && r.URL.Query().Get("call_id") != "":
		if u.Sideband == nil || !u.Live(r.URL.Query().Get("call_id")) {
			upstreamError(w, http.StatusNotFound, "call not found")
			return
		}
		u.Sideband.ServeHTTP(w, r)
	default:
		upstreamError(w, http.StatusNotFound, "unknown endpoint")
	}
}

func (u *Upstream) serveCall(w http.ResponseWriter, r *http.Request) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" {
		upstreamError(w, http.StatusBadRequest, "expected multipart/form-data")
		return
	}
	if err := r.ParseMultipartForm(1 << 20); err != nil {
		upstreamError(w, http.StatusBadRequest, "bad multipart form")
		return
	}
	offer, session := r.FormValue("sdp"), r.FormValue("session")
	if !strings.HasPrefix(offer, "v=0") {
		upstreamError(w, http.StatusBadRequest, "sdp is not an SDP offer")
		return
	}
	if session != "" && !json.Valid([]byte(session)) {
		upstreamError(w, http.StatusBadRequest, "session is not JSON")
		return
	}
	u.mu.Lock()
	u.seq++
	id := fmt.Sprintf("rtc_fake_%d", u.seq)
	u.calls = append(u.calls, UpstreamCall{ID: id, Offer: offer, Session: json.RawMessage(session), Header: r.Header.Clone()})
	if u.live == nil {
		u.live = make(map[string]chan struct{})
	}
	u.live[id] = make(chan struct{})
	u.mu.Unlock()
	w.Header().Set("Content-Type", "application/sdp")
	w.Header().Set("Location", "/v1/realtime/calls/"+id)
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, AnswerSDP(offer))
}

func upstreamError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, `{"error":{"message":%q,"type":"invalid_request_error"}}`, msg)
}

// Calls returns every call placed so far, in order.
func (u *Upstream) Calls() []UpstreamCall {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]UpstreamCall(nil), u.calls...)
}

// Hangups returns the call ID of every hang-up received, in order, those
// of calls that were not live included.
func (u *Upstream) Hangups() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.hangups...)
}

// Live reports whether call id is live: placed, not hung up, not ended.
func (u *Upstream) Live(id string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	_, ok := u.live[id]
	return ok
}

// Ended returns a channel closed when call id ends (hung up, or End); for
// a call that is not live, a closed channel.
func (u *Upstream) Ended(id string) <-chan struct{} {
	u.mu.Lock()
	defer u.mu.Unlock()
	if ch, ok := u.live[id]; ok {
		return ch
	}
	ch := make(chan struct{})
	close(ch)
	return ch
}

// End ends call id by itself, as when the user closes the tab: a sideband
// that waits on Ended closes, and later redials get 404.
func (u *Upstream) End(id string) {
	u.mu.Lock()
	ch, ok := u.live[id]
	delete(u.live, id)
	u.mu.Unlock()
	if ok {
		close(ch)
	}
}

// AnswerSDP returns an SDP answer to offer that a browser accepts as a
// remote description: one media section per offered one, same kind and
// mid, with made-up ICE credentials and DTLS fingerprint (so no media ever
// flows: the fake has no WebRTC stack).
func AnswerSDP(offer string) string {
	var b strings.Builder
	b.WriteString("v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n")
	var mids []string
	type section struct{ kind, proto, fmts, mid string }
	var secs []section
	for _, line := range strings.Split(offer, "\n") {
		line = strings.TrimRight(line, "\r")
		switch {
		case strings.HasPrefix(line, "m="):
			f := strings.Fields(line[2:])
			if len(f) < 4 {
				continue
			}
			secs = append(secs, section{kind: f[0], proto: f[2], fmts: strings.Join(f[3:], " ")})
		case strings.HasPrefix(line, "a=mid:") && len(secs) > 0:
			secs[len(secs)-1].mid = line[len("a=mid:"):]
			mids = append(mids, secs[len(secs)-1].mid)
		}
	}
	if len(mids) > 0 {
		b.WriteString("a=group:BUNDLE " + strings.Join(mids, " ") + "\r\n")
	}
	b.WriteString("a=msid-semantic: WMS\r\n")
	fp := strings.TrimSuffix(strings.Repeat("AB:", 32), ":")
	for _, s := range secs {
		common := "c=IN IP4 127.0.0.1\r\na=ice-ufrag:fake\r\na=ice-pwd:fakefakefakefakefakefake\r\n" +
			"a=fingerprint:sha-256 " + fp + "\r\na=setup:active\r\na=mid:" + s.mid + "\r\n"
		switch s.kind {
		case "audio":
			b.WriteString("m=audio 9 " + s.proto + " 111\r\n" + common +
				"a=sendrecv\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n")
		case "application":
			b.WriteString("m=application 9 " + s.proto + " " + s.fmts + "\r\n" + common + "a=sctp-port:5000\r\n")
		default:
			b.WriteString("m=" + s.kind + " 0 " + s.proto + " " + s.fmts + "\r\n" + common + "a=inactive\r\n")
		}
	}
	return b.String()
}

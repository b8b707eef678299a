package realtimeauth

import (
	"bytes"
	"context"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/realtimeauth/realtimeauth/calls"
)

// This file is the OpenAI minter's side of the relay: POST
// {baseURL}/realtime/calls (OpenAI's "unified interface" for WebRTC), the
// hang-up, and the sideband's address. It shares the minter's client,
// retries and redaction with Mint.

var _ calls.Upstream = (*openAIMinter)(nil)

// callID is what a call ID from the upstream's Location may look like
// ("rtc_" and letters today); anything else is refused rather than put in a
// URL or a header.
var callID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// callSession builds the "session" part of a call: the template, the
// request's own configuration over it, then type and model, as Mint's
// session is built.
func (m *openAIMinter) callSession(per json.RawMessage) ([]byte, error) {
	session := make(map[string]json.RawMessage, len(m.template)+2)
	for k, v := range m.template {
		session[k] = v
	}
	if len(per) > 0 {
		var cfg map[string]json.RawMessage
		if err := json.Unmarshal(per, &cfg); err != nil || cfg == nil {
			return nil, errorf("OpenAI minter: calls.Request.Session is not a JSON object")
		}
		for k, v := range cfg {
			session[k] = v
		}
	}
	session["type"] = json.RawMessage(`"realtime"`)
	model, _ := json.Marshal(m.model)
	session["model"] = model
	return json.Marshal(session)
}

// Call implements calls.Upstream: it posts multipart/form-data with the fields
// sdp (the offer) and session (the server's session configuration as
// JSON, with the model) to {baseURL}/realtime/calls, with the API key and
// OpenAI-Safety-Identifier, retried as Mint is. The upstream answers 201,
// the SDP answer as the body and Location: /v1/realtime/calls/{call_id}.
// An answer whose Location or SDP holds the API key (in any form the
// minter's redaction knows) is refused as a failed call, never retried.
func (m *openAIMinter) Call(ctx context.Context, req calls.Request) (calls.Answer, error) {
	if strings.TrimSpace(req.Offer) == "" {
		return calls.Answer{}, errorf("OpenAI minter: empty SDP offer")
	}
	session, err := m.callSession(req.Session)
	if err != nil {
		return calls.Answer{}, err
	}
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	_ = mw.WriteField("sdp", req.Offer) // writes to a bytes.Buffer never fail
	_ = mw.WriteField("session", string(session))
	_ = mw.Close()
	body, ctype := form.Bytes(), mw.FormDataContentType()
	sid := m.safetyIdentifier(req.Subject, req.SessionID)
	var ans calls.Answer
	_, err = m.retry.run(ctx, func() (Token, *UpstreamError, bool) {
		a, ue, retry := m.doCall(ctx, body, ctype, sid)
		ans = a
		return Token{}, ue, retry
	})
	if err != nil {
		return calls.Answer{}, err
	}
	return ans, nil
}

func (m *openAIMinter) callsURL() string { return m.baseURL + "/realtime/calls" }

// doCall makes one attempt at a call, as do does for a mint.
func (m *openAIMinter) doCall(ctx context.Context, body []byte, ctype, sid string) (calls.Answer, *UpstreamError, bool) {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, m.callsURL(), bytes.NewReader(body))
	if err != nil {
		return calls.Answer{}, &UpstreamError{Err: err}, false
	}
	hreq.Header.Set("Content-Type", ctype)
	hreq.Header.Set("Accept", "application/sdp")
	m.authorize(hreq.Header)
	if sid != "" {
		hreq.Header.Set(safetyIdentifierHeader, sid)
	}
	raw, ue, retry := m.send(ctx, hreq, callAnswer)
	if ue != nil {
		return calls.Answer{}, ue, retry
	}
	ue = &UpstreamError{StatusCode: raw.status, RequestID: raw.requestID}
	if raw.status != http.StatusCreated && raw.status != http.StatusOK {
		ue.Message = "unexpected status for a call"
		return calls.Answer{}, ue, false
	}
	if m.holdsKey(raw.location) || m.holdsKey(string(raw.body)) {
		// Echoed into the relay's Location, its events and logs, or the
		// browser's SDP: refused, never retried.
		ue.Message = "answer holding the API key"
		return calls.Answer{}, ue, false
	}
	id, ok := callIDFromLocation(raw.location)
	if !ok || m.holdsKey(id) {
		ue.Message = "answer without a usable call ID in Location"
		return calls.Answer{}, ue, false
	}
	if !bytes.HasPrefix(bytes.TrimSpace(raw.body), []byte("v=")) {
		ue.Message = "answer without an SDP body"
		return calls.Answer{}, ue, false
	}
	return calls.Answer{ID: id, SDP: string(raw.body)}, nil, false
}

// Hangup implements calls.Upstream: POST {baseURL}/realtime/calls/{id}/hangup,
// retried as Mint is. A 404 (the call has ended already) is a success.
func (m *openAIMinter) Hangup(ctx context.Context, id string) error {
	if !callID.MatchString(id) {
		return errorf("OpenAI minter: %q is not a call ID", id)
	}
	_, err := m.retry.run(ctx, func() (Token, *UpstreamError, bool) {
		hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, m.callsURL()+"/"+id+"/hangup", nil)
		if err != nil {
			return Token{}, &UpstreamError{Err: err}, false
		}
		m.authorize(hreq.Header)
		raw, ue, retry := m.send(ctx, hreq, callAnswer)
		if ue != nil {
			if ue.StatusCode == http.StatusNotFound {
				return Token{}, nil, false
			}
			return Token{}, ue, retry
		}
		if raw.status < 200 || raw.status > 299 {
			return Token{}, &UpstreamError{StatusCode: raw.status, RequestID: raw.requestID, Message: "unexpected status for a hang-up"}, false
		}
		return Token{}, nil, false
	})
	return err
}

// Sideband implements calls.Upstream: the base URL with ws for http and wss
// for https, path /realtime?call_id={id}, and the key's header.
func (m *openAIMinter) Sideband(id string) calls.Sideband {
	u := m.baseURL
	switch {
	case strings.HasPrefix(u, "https://"):
		u = "wss://" + u[len("https://"):]
	case strings.HasPrefix(u, "http://"):
		u = "ws://" + u[len("http://"):]
	}
	h := make(http.Header, 1)
	m.authorize(h)
	return calls.Sideband{CallID: id, URL: u + "/realtime?call_id=" + url.QueryEscape(id), Header: h}
}

// callAnswer is what a call or a hang-up accepts: any status below 400
// (send refuses a redirect first).
func callAnswer(status int) bool { return status < 400 }

// callIDFromLocation takes the call ID from /v1/realtime/calls/{call_id}
// (a path, or an absolute URL).
func callIDFromLocation(loc string) (string, bool) {
	if loc == "" {
		return "", false
	}
	u, err := url.Parse(loc)
	if err != nil {
		return "", false
	}
	rest, ok := strings.CutSuffix(u.Path, "/")
	if !ok {
		rest = u.Path
	}
	i := strings.LastIndex(rest, "/")
	if i < 0 || !strings.HasSuffix(rest[:i], "/realtime/calls") {
		return "", false
	}
	id := rest[i+1:]
	return id, callID.MatchString(id)
}

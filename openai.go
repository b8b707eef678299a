package realtimeauth

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/realtimeauth/realtimeauth/internal/redirect"
)

// openAIMinter is what NewOpenAIMinter returns.
type openAIMinter struct {
	apiKey   string
	baseURL  string
	endpoint string
	client   *http.Client
	model    string
	template map[string]json.RawMessage
	azure    bool
	maxBody  int64
	now      func() time.Time
	retry    retryPolicy
	// origin is the endpoint's scheme://host:port, the only place a
	// redirect may lead (see OpenAIConfig.HTTPClient).
	origin string
	// sidKey keys the hash of OpenAI-Safety-Identifier (safetyIdentifier).
	sidKey []byte
}

var _ Minter = (*openAIMinter)(nil)

// NewOpenAIMinter returns a Minter that authenticates with apiKey and
// mints ephemeral keys with OpenAI's (or Azure OpenAI's)
// POST {BaseURL}/realtime/client_secrets, configured by cfg. It is safe for
// concurrent use; its HTTP client keeps connections alive between mints.
// It also places relayed calls (see calls.Upstream).
//
// An answer whose token value holds the API key (in any form the minter's
// redaction knows: raw, JSON-, backslash- or URL-escaped) is refused as a
// failed mint, never retried, so that the key cannot reach the browser
// through an upstream that echoes it. Each request carries
// OpenAI-Safety-Identifier, a keyed hash of MintRequest.Subject, or of
// MintRequest.SessionID when the user is anonymous (see
// OpenAIConfig.SafetyIdentifierKey), so that OpenAI can act against one
// abusive user instead of the whole account.
func NewOpenAIMinter(apiKey string, cfg OpenAIConfig) (Minter, error) {
	apiKey, err := checkAPIKey(apiKey)
	if err != nil {
		return nil, err
	}
	c := cfg
	if c.HTTPClient != nil && c.WrapTransport != nil {
		return nil, errorf("OpenAIConfig.WrapTransport wraps the default client's transport: with HTTPClient set, wrap its Transport instead")
	}
	u, err := c.resolveEndpoint()
	if err != nil {
		return nil, err
	}
	if err := c.resolveAttempts(); err != nil {
		return nil, err
	}
	tmpl, err := parseTemplate(c.Session)
	if err != nil {
		return nil, err
	}
	if err := c.resolveSafetyKey(); err != nil {
		return nil, err
	}
	origin := redirect.Origin(u)
	client := c.HTTPClient
	if client == nil {
		var rt http.RoundTripper = newUpstreamTransport()
		if c.WrapTransport != nil {
			rt = c.WrapTransport(rt)
		}
		client = &http.Client{Transport: rt, CheckRedirect: redirect.Refuse}
	} else {
		client = redirect.SameOrigin(client, origin)
	}
	base := strings.TrimRight(c.BaseURL, "/")
	return &openAIMinter{
		origin:   origin,
		sidKey:   c.SafetyIdentifierKey,
		apiKey:   apiKey,
		baseURL:  base,
		endpoint: base + "/realtime/client_secrets",
		client:   client,
		model:    c.Model,
		template: tmpl,
		azure:    c.AzureResource != "",
		maxBody:  c.MaxUpstreamBody,
		now:      c.Clock,
		retry:    newRetryPolicy(c.MaxRetries, c.RetryBackoff, c.MaxRetryBackoff, c.Logger),
	}, nil
}

// requestBody builds {"expires_after":{...},"session":{...}}: the template,
// then the request's own configuration over it, then type and model.
func (m *openAIMinter) requestBody(req MintRequest) ([]byte, error) {
	session := make(map[string]json.RawMessage, len(m.template)+2)
	for k, v := range m.template {
		session[k] = v
	}
	if len(req.Session) > 0 {
		var per map[string]json.RawMessage
		if err := json.Unmarshal(req.Session, &per); err != nil || per == nil {
			return nil, errorf("OpenAI minter: MintRequest.Session is not a JSON object")
		}
		for k, v := range per {
			session[k] = v
		}
	}
	session["type"] = json.RawMessage(`"realtime"`)
	model, _ := json.Marshal(m.model)
	session["model"] = model
	secs := int64(req.TTL / time.Second)
	if secs == 0 {
		secs = int64(defaultTokenTTL / time.Second)
	}
	return json.Marshal(struct {
		ExpiresAfter struct {
			Anchor  string `json:"anchor"`
			Seconds int64  `json:"seconds"`
		} `json:"expires_after"`
		Session map[string]json.RawMessage `json:"session"`
	}{
		ExpiresAfter: struct {
			Anchor  string `json:"anchor"`
			Seconds int64  `json:"seconds"`
		}{"created_at", secs},
		Session: session,
	})
}

// Mint implements Minter (see NewOpenAIMinter).
func (m *openAIMinter) Mint(ctx context.Context, req MintRequest) (Token, error) {
	body, err := m.requestBody(req)
	if err != nil {
		return Token{}, err
	}
	sid := m.safetyIdentifier(req.Subject, req.SessionID)
	tok, err := m.retry.run(ctx, func() (Token, *UpstreamError, bool) { return m.do(ctx, body, sid) })
	if err == nil {
		tok.Model = m.model
	}
	return tok, err
}

// safetyIdentifierHeader carries safetyIdentifier's value on every upstream
// request (client_secrets and calls).
const safetyIdentifierHeader = "OpenAI-Safety-Identifier"

// safetyIdentifier is the value of OpenAI-Safety-Identifier for a user:
// HMAC-SHA-256, under the minter's secret, of the subject, or of the
// session ID when there is no subject (anonymous users), the two kept apart
// by a prefix; hex, cut to 32 characters (128 bits; OpenAI accepts up to
// 64). "" when both are empty: no header then. The secret makes it
// irreversible: without it, hashing a list of likely user IDs (emails)
// would find the user behind an identifier.
func (m *openAIMinter) safetyIdentifier(subject, sessionID string) string {
	var in string
	switch {
	case subject != "":
		in = "subject:" + subject
	case sessionID != "":
		in = "session:" + sessionID
	default:
		return ""
	}
	mac := hmac.New(sha256.New, m.sidKey)
	mac.Write([]byte(in))
	return hex.EncodeToString(mac.Sum(nil)[:16])
}

// do makes one attempt. It reports whether the failure is worth retrying;
// its UpstreamError's Attempts is left for the caller to fill in.
func (m *openAIMinter) do(ctx context.Context, body []byte, sid string) (Token, *UpstreamError, bool) {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, m.endpoint, bytes.NewReader(body))
	if err != nil {
		return Token{}, &UpstreamError{Err: err}, false
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/json")
	m.authorize(hreq.Header)
	if sid != "" {
		hreq.Header.Set(safetyIdentifierHeader, sid)
	}
	raw, ue, retry := m.send(ctx, hreq, mintAnswer)
	if ue != nil {
		return Token{}, ue, retry
	}
	tok, msg := m.parseToken(raw.body)
	if msg != "" {
		// Asking again would get the same answer.
		return Token{}, &UpstreamError{StatusCode: raw.status, RequestID: raw.requestID, RetryAfter: raw.retryAfter, Message: msg}, false
	}
	return tok, nil, false
}

// mintAnswer is the one status of a minted token.
func mintAnswer(status int) bool { return status == http.StatusOK }

// parseToken reads a client_secrets answer, or says what is wrong with it.
func (m *openAIMinter) parseToken(raw []byte) (Token, string) {
	var out struct {
		Value     string  `json:"value"`
		ExpiresAt float64 `json:"expires_at"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return Token{}, "malformed JSON answer"
	}
	if out.Value == "" {
		return Token{}, "answer without a value"
	}
	if m.holdsKey(out.Value) {
		return Token{}, "answer whose value holds the API key"
	}
	exp := time.Unix(int64(out.ExpiresAt), 0)
	if out.ExpiresAt <= 0 || !exp.After(m.now()) {
		return Token{}, "answer with a missing or past expires_at"
	}
	return Token{Value: out.Value, ExpiresAt: exp}, ""
}

// authorize sets the API key header, Azure's or OpenAI's.
func (m *openAIMinter) authorize(h http.Header) {
	if m.azure {
		h.Set("api-key", m.apiKey)
	} else {
		h.Set("Authorization", "Bearer "+m.apiKey)
	}
}

// upstreamAnswer is an answer of a status send accepts, read in full (up
// to maxBody).
type upstreamAnswer struct {
	status     int
	requestID  string
	retryAfter time.Duration
	location   string
	body       []byte
}

// send makes one request and reads its answer. A connection failure, a
// broken or oversized body, a redirect (refused by CheckRedirect, or a 3xx
// with no Location: the key was not sent on), any status accept refuses
// (its error message, redacted) and an answer from another origin (a
// client of the user's whose transport went elsewhere) come back as an
// UpstreamError, with whether to retry, the key redacted from all of it.
func (m *openAIMinter) send(ctx context.Context, hreq *http.Request, accept func(status int) bool) (upstreamAnswer, *UpstreamError, bool) {
	resp, err := m.client.Do(hreq)
	if err != nil {
		// A connection error is worth another try, unless our own context
		// has ended.
		return upstreamAnswer{}, &UpstreamError{Err: m.scrubErr(err)}, ctx.Err() == nil
	}
	defer resp.Body.Close()
	raw, readErr := io.ReadAll(io.LimitReader(resp.Body, m.maxBody+1))
	ue := &UpstreamError{
		StatusCode: resp.StatusCode,
		RequestID:  m.requestID(resp.Header),
		RetryAfter: parseRetryAfter(resp.Header, m.now()),
	}
	retryable := retryableAnswer(resp)
	switch {
	case readErr != nil:
		// The connection broke mid-answer: as retryable as one that broke
		// before it.
		ue.Err = m.scrubErr(readErr)
		return upstreamAnswer{}, ue, ctx.Err() == nil
	case int64(len(raw)) > m.maxBody:
		ue.Message = fmt.Sprintf("answer larger than %d bytes", m.maxBody)
		return upstreamAnswer{}, ue, retryable
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		ue.Message = "redirect to " + m.redirectTarget(resp) + " refused"
		return upstreamAnswer{}, ue, false
	case !accept(resp.StatusCode):
		ue.Message = m.upstreamMessage(raw)
		return upstreamAnswer{}, ue, retryable
	case resp.Request != nil && resp.Request.URL != nil && redirect.Origin(resp.Request.URL) != m.origin:
		ue.Message = "answer from another origin"
		return upstreamAnswer{}, ue, false
	}
	return upstreamAnswer{status: resp.StatusCode, requestID: ue.RequestID, retryAfter: ue.RetryAfter,
		location: resp.Header.Get("Location"), body: raw}, nil, false
}

// retryableAnswer follows OpenAI's own SDKs: x-should-retry decides when
// present; otherwise 408, 409, 429 and 5xx are retried, nothing else.
func retryableAnswer(resp *http.Response) bool {
	switch resp.Header.Get("x-should-retry") {
	case "true":
		return resp.StatusCode != http.StatusOK
	case "false":
		return false
	}
	switch s := resp.StatusCode; {
	case s == http.StatusRequestTimeout, s == http.StatusConflict, s == http.StatusTooManyRequests:
		return true
	default:
		return s >= 500
	}
}

// upstreamMessage pulls error.message out of an OpenAI error body, redacts
// the key from it and cuts it to a sane length. It redacts the decoded
// text, since decoding turns a JSON-escaped key into the raw key, and
// before cutting, or a key straddling the cut would leave a prefix behind.
func (m *openAIMinter) upstreamMessage(raw []byte) string {
	var e struct {
		Error struct {
			Message string `json:"message"`
			Code    any    `json:"code"`
		} `json:"error"`
	}
	msg := ""
	if json.Unmarshal(raw, &e) == nil && e.Error.Message != "" {
		msg = e.Error.Message
	} else {
		msg = string(raw)
	}
	msg = m.redact(msg)
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	return strings.ToValidUTF8(msg, "?")
}

// parseRetryAfter reads retry-after-ms, then Retry-After (seconds or an
// HTTP date).
func parseRetryAfter(h http.Header, now time.Time) time.Duration {
	if v := h.Get("retry-after-ms"); v != "" {
		var ms float64
		if _, err := fmt.Sscanf(v, "%g", &ms); err == nil && ms > 0 && ms < 1e9 {
			return time.Duration(ms * float64(time.Millisecond))
		}
	}
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	var secs float64
	if _, err := fmt.Sscanf(v, "%g", &secs); err == nil && secs > 0 && secs < 1e7 {
		return time.Duration(secs * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

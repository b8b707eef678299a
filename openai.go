package realtimeauth

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// OpenAIMinter mints ephemeral keys with OpenAI's (or Azure OpenAI's)
// POST {baseURL}/realtime/client_secrets. It is safe for concurrent use;
// its HTTP client keeps connections alive between mints.
type OpenAIMinter struct {
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
	// redirect may lead (see WithHTTPClient).
	origin string
	// sidKey keys the hash of OpenAI-Safety-Identifier (safetyIdentifier).
	sidKey []byte
}

var _ Minter = (*OpenAIMinter)(nil)

// OpenAIOption configures an OpenAIMinter.
type OpenAIOption func(*openAIConfig)

type openAIConfig struct {
	baseURL  string
	client   *http.Client
	model    string
	template json.RawMessage
	azureRes string
	azure    bool
	maxBody  int64
	now      func() time.Time
	retries  int
	retrySet bool
	backoff  [2]time.Duration // initial, max
	logger   *slog.Logger
	sidKey   []byte
	sidSet   bool
}

// Defaults of the OpenAI minter.
const (
	DefaultOpenAIBaseURL = "https://api.openai.com/v1"
	DefaultRealtimeModel = "gpt-realtime"
	// DefaultMaxUpstreamBody caps the upstream answer the minter reads.
	DefaultMaxUpstreamBody = 1 << 20
	// DefaultMaxRetries is how many times a failed mint is retried.
	DefaultMaxRetries = 2
	// DefaultRetryBackoff and DefaultMaxRetryBackoff bound the wait before
	// a retry when the upstream names none: it doubles from the first to
	// the second, less up to a quarter of random jitter.
	DefaultRetryBackoff    = 500 * time.Millisecond
	DefaultMaxRetryBackoff = 4 * time.Second
)

// WithBaseURL sets the API base URL. Default "https://api.openai.com/v1".
// It must be an absolute http or https URL.
func WithBaseURL(u string) OpenAIOption {
	return func(c *openAIConfig) { c.baseURL = u }
}

// WithHTTPClient sets the HTTP client. Default: a client of the minter's own
// with a keep-alive pool (NewUpstreamTransport) that follows no redirect.
// The handler's upstream timeout bounds each mint through its context
// either way.
//
// Redirects never carry the key elsewhere: the minter uses a copy of hc
// whose CheckRedirect refuses any redirect that leaves the endpoint's origin
// (another host or port, or another scheme, https to http included) before
// it is followed, and passes the others to hc's own CheckRedirect (or Go's
// default limit of 10). A refused redirect is a failed mint (502
// upstream_error, logged with its status and target host), never retried.
// The default client refuses every redirect: OpenAI's API does not redirect.
func WithHTTPClient(hc *http.Client) OpenAIOption {
	return func(c *openAIConfig) { c.client = hc }
}

// WithModel sets the realtime model. Default "gpt-realtime". With Azure it
// is the deployment name.
func WithModel(model string) OpenAIOption {
	return func(c *openAIConfig) { c.model = model }
}

// WithSessionTemplate sets the realtime session configuration (voice,
// instructions, tools, audio formats...) every token is minted with: a JSON
// object merged under "session" in the request. "type" and "model" are the
// minter's and may not appear in it (use WithModel). Default: none.
func WithSessionTemplate(session json.RawMessage) OpenAIOption {
	return func(c *openAIConfig) { c.template = session }
}

// WithAzure targets Azure OpenAI: base URL
// https://{resource}.openai.azure.com/openai/v1, the key sent in an api-key
// header, and deployment as the model.
func WithAzure(resource, deployment string) OpenAIOption {
	return func(c *openAIConfig) {
		c.azure, c.azureRes, c.model = true, resource, deployment
	}
}

// WithMaxUpstreamBody caps how many bytes of an upstream answer are read.
// Default 1 MiB; valid range 1 KiB..16 MiB.
func WithMaxUpstreamBody(n int64) OpenAIOption {
	return func(c *openAIConfig) { c.maxBody = n }
}

// WithMinterClock sets the clock used to reject tokens that are already
// expired. Default time.Now.
func WithMinterClock(now func() time.Time) OpenAIOption {
	return func(c *openAIConfig) { c.now = now }
}

// WithMaxRetries sets how many times a mint is retried after a connection
// error or an answer of 408, 409, 429 or 5xx (or one marked
// x-should-retry: true); other answers are never retried. Default 2; valid
// range 0..10, 0 turns retries off. Retries never outlast the mint's
// context: when the wait before the next attempt (the upstream's
// retry-after-ms or Retry-After, else the backoff) would pass its deadline,
// the minter returns the last failure at once.
func WithMaxRetries(n int) OpenAIOption {
	return func(c *openAIConfig) { c.retries, c.retrySet = n, true }
}

// WithRetryBackoff sets the wait before a retry when the upstream names
// none: initial before the first retry, doubling up to maxWait, each less
// up to a quarter of random jitter. Defaults 500ms and 4s; initial must be
// in 1ms..maxWait, maxWait at most 1m.
func WithRetryBackoff(initial, maxWait time.Duration) OpenAIOption {
	return func(c *openAIConfig) { c.backoff = [2]time.Duration{initial, maxWait} }
}

// WithMinterLogger sets where the minter logs the attempts it retries
// (status, x-request-id, the wait; never the key). The final failure is the
// handler's to log. Default: slog.Default().
func WithMinterLogger(l *slog.Logger) OpenAIOption {
	return func(c *openAIConfig) { c.logger = l }
}

// WithSafetyIdentifierKey sets the secret that keys the hash sent as
// OpenAI-Safety-Identifier (see OpenAIMinter.Mint). Default: 32 random
// bytes drawn by NewOpenAIMinter, so a user's identifier is stable for the
// minter's life (one process) and cannot be matched against a dictionary of
// user IDs by anyone, OpenAI included (it knows the API key, so the API key
// could not be the secret). Give every instance the same secret to keep a
// user's identifier stable across restarts and instances; it must be at
// least 16 bytes.
func WithSafetyIdentifierKey(secret []byte) OpenAIOption {
	return func(c *openAIConfig) { c.sidKey, c.sidSet = bytes.Clone(secret), true }
}

var azureResource = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9-]{0,62}$`)

// NewUpstreamTransport returns the transport the minter uses by default:
// keep-alive with an idle pool per host, and bounded dial, TLS handshake and
// response header times.
func NewUpstreamTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// NewOpenAIMinter returns a minter that authenticates with apiKey.
func NewOpenAIMinter(apiKey string, opts ...OpenAIOption) (*OpenAIMinter, error) {
	apiKey = strings.TrimSpace(apiKey)
	if apiKey == "" {
		return nil, errorf("NewOpenAIMinter: empty API key")
	}
	for i := 0; i < len(apiKey); i++ {
		// Printable ASCII only: what an HTTP header carries unchanged, and
		// what redact knows every encoding of. No backslash either: no
		// key has one, and a key of many would let redact's search for its
		// escaped forms branch at every one of them.
		if apiKey[i] <= ' ' || apiKey[i] > '~' || apiKey[i] == '\\' {
			return nil, errorf("NewOpenAIMinter: the API key contains a space, a backslash, a control character or a non-ASCII byte")
		}
	}
	c := openAIConfig{}
	for _, o := range opts {
		if o == nil {
			return nil, errorf("NewOpenAIMinter: nil OpenAIOption")
		}
		o(&c)
	}
	if c.azure {
		if !azureResource.MatchString(c.azureRes) {
			return nil, errorf("WithAzure: %q is not an Azure resource name", c.azureRes)
		}
		if c.model == "" {
			return nil, errorf("WithAzure: empty deployment name")
		}
		if c.baseURL == "" {
			c.baseURL = "https://" + strings.ToLower(c.azureRes) + ".openai.azure.com/openai/v1"
		}
	}
	if c.baseURL == "" {
		c.baseURL = DefaultOpenAIBaseURL
	}
	u, err := url.Parse(c.baseURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, errorf("WithBaseURL: %q is not an absolute http(s) URL without query or credentials", c.baseURL)
	}
	if c.model == "" {
		c.model = DefaultRealtimeModel
	}
	if c.maxBody == 0 {
		c.maxBody = DefaultMaxUpstreamBody
	}
	if c.maxBody < 1<<10 || c.maxBody > 16<<20 {
		return nil, errorf("WithMaxUpstreamBody: %d is outside 1024..16777216", c.maxBody)
	}
	if c.now == nil {
		c.now = time.Now
	}
	if !c.retrySet {
		c.retries = DefaultMaxRetries
	}
	if c.retries < 0 || c.retries > 10 {
		return nil, errorf("WithMaxRetries: %d is outside 0..10", c.retries)
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	if c.backoff == [2]time.Duration{} {
		c.backoff = [2]time.Duration{DefaultRetryBackoff, DefaultMaxRetryBackoff}
	}
	if c.backoff[0] < time.Millisecond || c.backoff[0] > c.backoff[1] || c.backoff[1] > time.Minute {
		return nil, errorf("WithRetryBackoff: %v, %v: initial must be in 1ms..maxWait, maxWait at most 1m", c.backoff[0], c.backoff[1])
	}
	var tmpl map[string]json.RawMessage
	if len(c.template) > 0 {
		if err := json.Unmarshal(c.template, &tmpl); err != nil || tmpl == nil {
			return nil, errorf("WithSessionTemplate: not a JSON object")
		}
		for _, k := range []string{"type", "model"} {
			if _, ok := tmpl[k]; ok {
				return nil, errorf("WithSessionTemplate: %q is set by the minter (use WithModel for the model)", k)
			}
		}
	}
	if c.sidSet && len(c.sidKey) < 16 {
		return nil, errorf("WithSafetyIdentifierKey: the secret has %d bytes, at least 16 are needed", len(c.sidKey))
	}
	if !c.sidSet {
		c.sidKey = make([]byte, 32)
		_, _ = rand.Read(c.sidKey) // never fails (crypto/rand)
	}
	origin := originOf(u)
	if c.client == nil {
		c.client = &http.Client{Transport: NewUpstreamTransport(), CheckRedirect: refuseRedirect}
	} else {
		c.client = sameOriginRedirects(c.client, origin)
	}
	base := strings.TrimRight(c.baseURL, "/")
	return &OpenAIMinter{
		origin:   origin,
		sidKey:   c.sidKey,
		apiKey:   apiKey,
		baseURL:  base,
		endpoint: base + "/realtime/client_secrets",
		client:   c.client,
		model:    c.model,
		template: tmpl,
		azure:    c.azure,
		maxBody:  c.maxBody,
		now:      c.now,
		retry:    newRetryPolicy(c.retries, c.backoff[0], c.backoff[1], c.logger),
	}, nil
}

// Endpoint returns the URL the minter posts to.
func (m *OpenAIMinter) Endpoint() string { return m.endpoint }

// Model returns the model (or Azure deployment) tokens are minted for.
func (m *OpenAIMinter) Model() string { return m.model }

// requestBody builds {"expires_after":{...},"session":{...}}: the template,
// then the request's own configuration over it, then type and model.
func (m *OpenAIMinter) requestBody(req MintRequest) ([]byte, error) {
	session := make(map[string]json.RawMessage, len(m.template)+2)
	for k, v := range m.template {
		session[k] = v
	}
	if len(req.Session) > 0 {
		var per map[string]json.RawMessage
		if err := json.Unmarshal(req.Session, &per); err != nil || per == nil {
			return nil, errorf("OpenAIMinter: MintRequest.Session is not a JSON object")
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

// Mint implements Minter. An answer whose token value holds the API key
// (in any form the minter's redaction knows: raw, JSON-, backslash- or
// URL-escaped) is refused as a failed mint, never retried, so that the key
// cannot reach the browser through an upstream that echoes it. Each request carries OpenAI-Safety-Identifier, a
// keyed hash of req.Subject, or of req.SessionID when the user is anonymous
// (see WithSafetyIdentifierKey), so that OpenAI can act against one abusive
// user instead of the whole account.
func (m *OpenAIMinter) Mint(ctx context.Context, req MintRequest) (Token, error) {
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
func (m *OpenAIMinter) safetyIdentifier(subject, sessionID string) string {
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

// refuseRedirect is the default client's CheckRedirect: the redirect itself
// is the answer, and the key goes nowhere else.
func refuseRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// sameOriginRedirects returns a copy of hc that follows a redirect only
// within origin, under hc's own CheckRedirect; any other redirect is
// refused before its request is made.
func sameOriginRedirects(hc *http.Client, origin string) *http.Client {
	cp := *hc
	next := hc.CheckRedirect
	cp.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if originOf(req.URL) != origin {
			return http.ErrUseLastResponse
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
	return &cp
}

// originOf is u's scheme://host:port, lower case, with the scheme's default
// port made explicit.
func originOf(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[scheme]
	}
	return scheme + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// do makes one attempt. It reports whether the failure is worth retrying;
// its UpstreamError's Attempts is left for the caller to fill in.
func (m *OpenAIMinter) do(ctx context.Context, body []byte, sid string) (Token, *UpstreamError, bool) {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, m.endpoint, bytes.NewReader(body))
	if err != nil {
		return Token{}, &UpstreamError{Err: err}, false
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/json")
	if m.azure {
		hreq.Header.Set("api-key", m.apiKey)
	} else {
		hreq.Header.Set("Authorization", "Bearer "+m.apiKey)
	}
	if sid != "" {
		hreq.Header.Set(safetyIdentifierHeader, sid)
	}
	resp, err := m.client.Do(hreq)
	if err != nil {
		// A connection error is worth another try, unless our own context
		// has ended.
		return Token{}, &UpstreamError{Err: m.scrubErr(err)}, ctx.Err() == nil
	}
	defer resp.Body.Close()
	raw, readErr := io.ReadAll(io.LimitReader(resp.Body, m.maxBody+1))
	ue := &UpstreamError{
		StatusCode: resp.StatusCode,
		RequestID:  m.requestID(resp.Header),
		RetryAfter: parseRetryAfter(resp.Header, m.now()),
	}
	retryable := retryableAnswer(resp)
	if readErr != nil {
		// The connection broke mid-answer: as retryable as one that broke
		// before it.
		ue.Err = m.scrubErr(readErr)
		return Token{}, ue, ctx.Err() == nil
	}
	if int64(len(raw)) > m.maxBody {
		ue.Message = fmt.Sprintf("answer larger than %d bytes", m.maxBody)
		return Token{}, ue, retryable
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		// Refused by CheckRedirect (or a 3xx with no Location): the key
		// was not sent on, and asking again would get the same answer.
		ue.Message = "redirect to " + m.redirectTarget(resp) + " refused"
		return Token{}, ue, false
	}
	if resp.StatusCode != http.StatusOK {
		ue.Message = m.upstreamMessage(raw)
		return Token{}, ue, retryable
	}
	if resp.Request != nil && resp.Request.URL != nil && originOf(resp.Request.URL) != m.origin {
		// A client of the user's whose transport went elsewhere.
		ue.Message = "answer from another origin"
		return Token{}, ue, false
	}
	var out struct {
		Value     string  `json:"value"`
		ExpiresAt float64 `json:"expires_at"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		ue.Message = "malformed JSON answer"
		return Token{}, ue, false
	}
	if out.Value == "" {
		ue.Message = "answer without a value"
		return Token{}, ue, false
	}
	if m.holdsKey(out.Value) {
		ue.Message = "answer whose value holds the API key"
		return Token{}, ue, false
	}
	exp := time.Unix(int64(out.ExpiresAt), 0)
	if out.ExpiresAt <= 0 || !exp.After(m.now()) {
		ue.Message = "answer with a missing or past expires_at"
		return Token{}, ue, false
	}
	return Token{Value: out.Value, ExpiresAt: exp}, nil, false
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
func (m *OpenAIMinter) upstreamMessage(raw []byte) string {
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

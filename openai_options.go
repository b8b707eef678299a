package realtimeauth

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// This file is the OpenAIMinter's configuration: its options, their
// defaults and the checks NewOpenAIMinter makes of them.

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

// checkAPIKey trims apiKey and checks that it is one an HTTP header carries
// unchanged.
func checkAPIKey(apiKey string) (string, error) {
	apiKey = strings.TrimSpace(apiKey)
	if apiKey == "" {
		return "", errorf("NewOpenAIMinter: empty API key")
	}
	for i := 0; i < len(apiKey); i++ {
		// Printable ASCII only: what an HTTP header carries unchanged, and
		// what redact knows every encoding of. No backslash either: no
		// key has one, and a key of many would let redact's search for its
		// escaped forms branch at every one of them.
		if apiKey[i] <= ' ' || apiKey[i] > '~' || apiKey[i] == '\\' {
			return "", errorf("NewOpenAIMinter: the API key contains a space, a backslash, a control character or a non-ASCII byte")
		}
	}
	return apiKey, nil
}

// resolveEndpoint checks WithAzure and WithBaseURL, fills in their
// defaults and the model's, and returns the base URL parsed.
func (c *openAIConfig) resolveEndpoint() (*url.URL, error) {
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
	return u, nil
}

// resolveAttempts checks and defaults what bounds one mint and its
// retries: the answer's size, the clock, the retries, their backoff and
// their logger.
func (c *openAIConfig) resolveAttempts() error {
	if c.maxBody == 0 {
		c.maxBody = DefaultMaxUpstreamBody
	}
	if c.maxBody < 1<<10 || c.maxBody > 16<<20 {
		return errorf("WithMaxUpstreamBody: %d is outside 1024..16777216", c.maxBody)
	}
	if c.now == nil {
		c.now = time.Now
	}
	if !c.retrySet {
		c.retries = DefaultMaxRetries
	}
	if c.retries < 0 || c.retries > 10 {
		return errorf("WithMaxRetries: %d is outside 0..10", c.retries)
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	if c.backoff == [2]time.Duration{} {
		c.backoff = [2]time.Duration{DefaultRetryBackoff, DefaultMaxRetryBackoff}
	}
	if c.backoff[0] < time.Millisecond || c.backoff[0] > c.backoff[1] || c.backoff[1] > time.Minute {
		return errorf("WithRetryBackoff: %v, %v: initial must be in 1ms..maxWait, maxWait at most 1m", c.backoff[0], c.backoff[1])
	}
	return nil
}

// parseTemplate checks WithSessionTemplate's object (nil for none).
func parseTemplate(raw json.RawMessage) (map[string]json.RawMessage, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	var tmpl map[string]json.RawMessage
	if err := json.Unmarshal(raw, &tmpl); err != nil || tmpl == nil {
		return nil, errorf("WithSessionTemplate: not a JSON object")
	}
	for _, k := range []string{"type", "model"} {
		if _, ok := tmpl[k]; ok {
			return nil, errorf("WithSessionTemplate: %q is set by the minter (use WithModel for the model)", k)
		}
	}
	return tmpl, nil
}

// resolveSafetyKey checks WithSafetyIdentifierKey's secret, or draws one.
func (c *openAIConfig) resolveSafetyKey() error {
	if c.sidSet && len(c.sidKey) < 16 {
		return errorf("WithSafetyIdentifierKey: the secret has %d bytes, at least 16 are needed", len(c.sidKey))
	}
	if !c.sidSet {
		c.sidKey = make([]byte, 32)
		_, _ = rand.Read(c.sidKey) // never fails (crypto/rand)
	}
	return nil
}

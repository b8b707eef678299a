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

// This file is the OpenAI minter's configuration: OpenAIConfig, its
// defaults and the checks NewOpenAIMinter makes of it.

// OpenAIConfig configures the minter NewOpenAIMinter returns. A zero field
// keeps its default, stated in its doc.
type OpenAIConfig struct {
	// BaseURL is the API base URL, an absolute http or https URL. Default
	// "https://api.openai.com/v1", or with AzureResource
	// https://{resource}.openai.azure.com/openai/v1.
	BaseURL string
	// HTTPClient is the HTTP client. Default: a client of the minter's own
	// with a keep-alive pool per host and bounded dial, TLS handshake and
	// response header times, that follows no redirect. The handler's
	// upstream timeout bounds each mint through its context either way.
	//
	// Redirects never carry the key elsewhere: the minter uses a copy of
	// the client whose CheckRedirect refuses any redirect that leaves the
	// endpoint's origin (another host or port, or another scheme, https to
	// http included) before it is followed, and passes the others to the
	// client's own CheckRedirect (or Go's default limit of 10). A refused
	// redirect is a failed mint (502 upstream_error, logged with its status
	// and target host), never retried. The default client refuses every
	// redirect: OpenAI's API does not redirect.
	HTTPClient *http.Client
	// WrapTransport, when set and HTTPClient is not, wraps the default
	// client's transport (its pool and bounded times kept), to observe
	// the upstream calls: metrics.Collector.Transport, a tracer. It is
	// called once, by NewOpenAIMinter.
	WrapTransport func(http.RoundTripper) http.RoundTripper
	// Model is the realtime model. Default "gpt-realtime". With
	// AzureResource it is the deployment name, and has no default.
	Model string
	// Session is the realtime session configuration (voice, instructions,
	// tools, audio formats...) every token is minted with: a JSON object
	// merged under "session" in the request. "type" and "model" are the
	// minter's and may not appear in it (use Model). Default: none.
	Session json.RawMessage
	// AzureResource targets Azure OpenAI: the resource's base URL (unless
	// BaseURL is set), the key sent in an api-key header, and Model as the
	// deployment. Default "": OpenAI.
	AzureResource string
	// MaxUpstreamBody caps how many bytes of an upstream answer are read.
	// Default 1 MiB; valid 1 KiB..16 MiB.
	MaxUpstreamBody int64
	// MaxRetries is how many times a mint is retried after a connection
	// error or an answer of 408, 409, 429 or 5xx (or one marked
	// x-should-retry: true); other answers are never retried. Default 2;
	// at most 10; negative means no retries. Retries never outlast the
	// mint's context: when the wait before the next attempt (the
	// upstream's retry-after-ms or Retry-After, else the backoff) would
	// pass its deadline, the minter returns the last failure at once.
	MaxRetries int
	// RetryBackoff is the wait before the first retry when the upstream
	// names none, doubling before each next one up to MaxRetryBackoff, each
	// less up to a quarter of random jitter. Default 500ms; valid
	// 1ms..MaxRetryBackoff.
	RetryBackoff time.Duration
	// MaxRetryBackoff caps the wait of RetryBackoff. Default 4s (or
	// RetryBackoff, when that is longer); at most 1m.
	MaxRetryBackoff time.Duration
	// SafetyIdentifierKey is the secret that keys the hash sent as
	// OpenAI-Safety-Identifier (see NewOpenAIMinter). Default: 32 random
	// bytes drawn by NewOpenAIMinter, so a user's identifier is stable for
	// the minter's life (one process) and cannot be matched against a
	// dictionary of user IDs by anyone, OpenAI included (it knows the API
	// key, so the API key could not be the secret). Give every instance
	// the same secret to keep a user's identifier stable across restarts
	// and instances; it must be at least 16 bytes. NewOpenAIMinter copies
	// it.
	SafetyIdentifierKey []byte
	// Logger is where the minter logs the attempts it retries (status,
	// x-request-id, the wait; never the key). The final failure is the
	// handler's to log. Default: slog.Default().
	Logger *slog.Logger
	// Clock is the clock used to reject tokens that are already expired.
	// Default time.Now.
	Clock func() time.Time
}

// Defaults of OpenAIConfig, stated in its field docs.
const (
	defaultOpenAIBaseURL   = "https://api.openai.com/v1"
	defaultRealtimeModel   = "gpt-realtime"
	defaultMaxUpstreamBody = 1 << 20
	defaultMaxRetries      = 2
	defaultRetryBackoff    = 500 * time.Millisecond
	defaultMaxRetryBackoff = 4 * time.Second
)

var azureResource = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9-]{0,62}$`)

// newUpstreamTransport returns the transport the minter uses by default:
// keep-alive with an idle pool per host, and bounded dial, TLS handshake and
// response header times.
func newUpstreamTransport() *http.Transport {
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

// resolveEndpoint checks AzureResource and BaseURL, fills in their
// defaults and the model's, and returns the base URL parsed.
func (c *OpenAIConfig) resolveEndpoint() (*url.URL, error) {
	if c.AzureResource != "" {
		if !azureResource.MatchString(c.AzureResource) {
			return nil, errorf("OpenAIConfig.AzureResource: %q is not an Azure resource name", c.AzureResource)
		}
		if c.Model == "" {
			return nil, errorf("OpenAIConfig.Model: empty: with AzureResource it is the deployment name, which has no default")
		}
		if c.BaseURL == "" {
			c.BaseURL = "https://" + strings.ToLower(c.AzureResource) + ".openai.azure.com/openai/v1"
		}
	}
	if c.BaseURL == "" {
		c.BaseURL = defaultOpenAIBaseURL
	}
	u, err := url.Parse(c.BaseURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, errorf("OpenAIConfig.BaseURL: %q is not an absolute http(s) URL without query or credentials", c.BaseURL)
	}
	if c.Model == "" {
		c.Model = defaultRealtimeModel
	}
	return u, nil
}

// resolveAttempts checks and defaults what bounds one mint and its
// retries: the answer's size, the clock, the retries, their backoff and
// their logger.
func (c *OpenAIConfig) resolveAttempts() error {
	if c.MaxUpstreamBody == 0 {
		c.MaxUpstreamBody = defaultMaxUpstreamBody
	}
	if c.MaxUpstreamBody < 1<<10 || c.MaxUpstreamBody > 16<<20 {
		return errorf("OpenAIConfig.MaxUpstreamBody: %d is outside 1024..16777216", c.MaxUpstreamBody)
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	switch {
	case c.MaxRetries == 0:
		c.MaxRetries = defaultMaxRetries
	case c.MaxRetries < 0:
		c.MaxRetries = 0 // none
	case c.MaxRetries > 10:
		return errorf("OpenAIConfig.MaxRetries: %d is over 10", c.MaxRetries)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.RetryBackoff == 0 {
		c.RetryBackoff = defaultRetryBackoff
	}
	if c.MaxRetryBackoff == 0 {
		c.MaxRetryBackoff = max(defaultMaxRetryBackoff, c.RetryBackoff)
	}
	if c.MaxRetryBackoff > time.Minute {
		return errorf("OpenAIConfig.MaxRetryBackoff: %v is over 1m", c.MaxRetryBackoff)
	}
	if c.RetryBackoff < time.Millisecond || c.RetryBackoff > c.MaxRetryBackoff {
		return errorf("OpenAIConfig.RetryBackoff: %v is outside 1ms..MaxRetryBackoff (%v)", c.RetryBackoff, c.MaxRetryBackoff)
	}
	return nil
}

// parseTemplate checks OpenAIConfig.Session's object (nil for none).
func parseTemplate(raw json.RawMessage) (map[string]json.RawMessage, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	var tmpl map[string]json.RawMessage
	if err := json.Unmarshal(raw, &tmpl); err != nil || tmpl == nil {
		return nil, errorf("OpenAIConfig.Session: not a JSON object")
	}
	for _, k := range []string{"type", "model"} {
		if _, ok := tmpl[k]; ok {
			return nil, errorf("OpenAIConfig.Session: %q is set by the minter (use OpenAIConfig.Model for the model)", k)
		}
	}
	return tmpl, nil
}

// resolveSafetyKey checks SafetyIdentifierKey and copies it, or draws one.
func (c *OpenAIConfig) resolveSafetyKey() error {
	if len(c.SafetyIdentifierKey) == 0 {
		c.SafetyIdentifierKey = make([]byte, 32)
		_, _ = rand.Read(c.SafetyIdentifierKey) // never fails (crypto/rand)
		return nil
	}
	if len(c.SafetyIdentifierKey) < 16 {
		return errorf("OpenAIConfig.SafetyIdentifierKey: the secret has %d bytes, at least 16 are needed", len(c.SafetyIdentifierKey))
	}
	c.SafetyIdentifierKey = bytes.Clone(c.SafetyIdentifierKey)
	return nil
}

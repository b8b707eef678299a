package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/realtimeauth/realtimeauth"
	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"
)

// config is the example server's configuration, read from the environment.
type config struct {
	Addr               string
	APIKey             string // empty: dev mode
	BaseURL            string
	Model              string
	AllowedOrigins     []string // nil: follow the listening address (listenOrigins)
	RateLimit          int
	MintLimit          int
	MaxPerClient       int
	MaxSessions        int
	TokenTTL           time.Duration
	MaxRefreshes       int
	RefreshMinInterval time.Duration
	UpstreamTimeout    time.Duration
	TrustedProxies     []string
	LogJSON            bool
	BlockThreshold     int
	BlockWindow        time.Duration
	BlockDuration      time.Duration
	UpstreamRate       rate.Limit // 0: no budget
	UpstreamBurst      int
	Redis              *redis.Options // nil: state in memory (REDIS_URL unset)
	MetricsAddr        string         // "": no /metrics
	TLS                *tls.Config    // nil: plain HTTP
	Calls              callSettings   // calls.go
}

// DevMode reports whether tokens are minted locally instead of by OpenAI.
func (c config) DevMode() bool { return c.APIKey == "" }

// loadConfig reads every variable through getenv and refuses bad values
// with an error naming the variable.
func loadConfig(getenv func(string) string) (config, error) {
	c := config{}
	e := &envReader{getenv: getenv}
	c.Addr = e.str("ADDR", "localhost:4321")
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		e.fail(fmt.Errorf("ADDR=%q: want host:port", c.Addr))
	}
	e.loadOpenAI(&c)
	e.loadOrigins(&c)
	e.loadLimits(&c)
	e.loadLogging(&c)
	e.loadBlocking(&c)
	e.loadListeners(&c)
	var callErrs []error
	c.Calls, callErrs = loadCallSettings(getenv)
	e.errs = append(e.errs, callErrs...)
	if v := strings.TrimSpace(getenv("REDIS_URL")); v != "" {
		opt, err := parseRedisURL(v)
		e.errs = append(e.errs, err)
		c.Redis = opt
	}
	return c, errors.Join(e.errs...)
}

// envReader reads variables through getenv: a bad value adds an error
// naming the variable, and reads as the default.
type envReader struct {
	getenv func(string) string
	errs   []error
}

func (e *envReader) fail(err error) { e.errs = append(e.errs, err) }

func (e *envReader) str(name, def string) string {
	if v := strings.TrimSpace(e.getenv(name)); v != "" {
		return v
	}
	return def
}

func (e *envReader) integer(name string, def, lo, hi int) int {
	v := strings.TrimSpace(e.getenv(name))
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		e.fail(fmt.Errorf("%s=%q: want a whole number in %d..%d", name, v, lo, hi))
		return def
	}
	return n
}

func (e *envReader) duration(name string, def, lo, hi time.Duration) time.Duration {
	v := strings.TrimSpace(e.getenv(name))
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < lo || d > hi {
		e.fail(fmt.Errorf("%s=%q: want a Go duration (like 10s or 15m) in %v..%v", name, v, lo, hi))
		return def
	}
	return d
}

func (e *envReader) list(name, def string) []string {
	var out []string
	for _, s := range strings.Split(e.str(name, def), ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// loadOpenAI reads the API key (OPENAI_API_KEY or OPENAI_API_KEY_FILE),
// OPENAI_BASE_URL and OPENAI_REALTIME_MODEL.
func (e *envReader) loadOpenAI(c *config) {
	c.APIKey = strings.TrimSpace(e.getenv("OPENAI_API_KEY"))
	keyVar := "OPENAI_API_KEY"
	if path := strings.TrimSpace(e.getenv("OPENAI_API_KEY_FILE")); path != "" {
		keyVar = "OPENAI_API_KEY_FILE"
		if c.APIKey != "" {
			e.fail(errors.New("OPENAI_API_KEY and OPENAI_API_KEY_FILE are both set: set one of them"))
		}
		// A secret mounted as a file (Docker, Kubernetes) usually ends in
		// a newline.
		if b, err := os.ReadFile(path); err != nil {
			e.fail(fmt.Errorf("OPENAI_API_KEY_FILE: %v", err))
		} else if c.APIKey = strings.TrimSpace(string(b)); c.APIKey == "" {
			e.fail(fmt.Errorf("OPENAI_API_KEY_FILE=%q: the file is empty (unset the variable for dev mode)", path))
		}
	}
	if strings.IndexFunc(c.APIKey, badRune) >= 0 {
		// Never the value: it is a secret.
		e.fail(fmt.Errorf("%s: contains a space or a control character", keyVar))
	}
	c.BaseURL = e.str("OPENAI_BASE_URL", "https://api.openai.com/v1")
	if _, err := realtimeauth.NewOpenAIMinter("config-check", realtimeauth.OpenAIConfig{BaseURL: c.BaseURL}); err != nil {
		// Not the value either: it may carry credentials.
		e.fail(errors.New("OPENAI_BASE_URL: want an absolute http(s) URL without query or credentials"))
	}
	c.Model = e.str("OPENAI_REALTIME_MODEL", "gpt-realtime")
	if strings.IndexFunc(c.Model, badRune) >= 0 {
		e.fail(fmt.Errorf("OPENAI_REALTIME_MODEL=%q: contains a space or a control character", c.Model))
	}
}

// loadOrigins reads ALLOWED_ORIGINS.
func (e *envReader) loadOrigins(c *config) {
	for _, o := range e.list("ALLOWED_ORIGINS", "") {
		// The handler checks origins when it is built: build one to refuse
		// a bad entry now, with its reason.
		if _, err := realtimeauth.New(realtimeauth.NewDevMinter(nil), realtimeauth.WithAllowedOrigins(o)); err != nil {
			e.fail(fmt.Errorf("ALLOWED_ORIGINS: %q: %v", o, strings.TrimPrefix(err.Error(), "realtimeauth: ")))
			continue
		}
		c.AllowedOrigins = append(c.AllowedOrigins, o)
	}
	if len(c.AllowedOrigins) > 1 && slices.Contains(c.AllowedOrigins, "*") {
		e.fail(errors.New(`ALLOWED_ORIGINS: "*" must stand alone`))
	}
}

// loadLimits reads the allowances, the session caps, the token's and the
// refreshes' lengths and the upstream timeout.
func (e *envReader) loadLimits(c *config) {
	c.RateLimit = e.integer("VOICE_AGENT_RATE_LIMIT", 10, 1, 1023)
	c.MintLimit = e.integer("VOICE_AGENT_MINT_LIMIT", 30, 1, 1023)
	c.MaxPerClient = e.integer("VOICE_AGENT_MAX_SESSIONS_PER_CLIENT", 10, 1, 1_000_000)
	c.MaxSessions = e.integer("VOICE_AGENT_MAX_SESSIONS", 1_000_000, 1, 100_000_000)
	c.TokenTTL = time.Duration(e.integer("VOICE_AGENT_TOKEN_DURATION", 60, 10, 7200)) * time.Second
	c.MaxRefreshes = e.integer("VOICE_AGENT_MAX_REFRESHES", 120, 1, 1_000_000)
	// At most the session TTL, the handler's default hour.
	c.RefreshMinInterval = e.duration("VOICE_AGENT_REFRESH_MIN_INTERVAL", 10*time.Second, 0, time.Hour)
	if c.TokenTTL <= c.RefreshMinInterval {
		e.fail(fmt.Errorf("VOICE_AGENT_TOKEN_DURATION=%d (seconds) is not longer than VOICE_AGENT_REFRESH_MIN_INTERVAL=%v: "+
			"no refresh could succeed before a token expires; make the duration longer or the interval shorter",
			int(c.TokenTTL/time.Second), c.RefreshMinInterval))
	}
	c.UpstreamTimeout = e.duration("VOICE_AGENT_UPSTREAM_TIMEOUT", 10*time.Second, 100*time.Millisecond, 2*time.Minute)
}

// loadLogging reads TRUSTED_PROXIES, which the logged client addresses
// follow, and LOG_FORMAT.
func (e *envReader) loadLogging(c *config) {
	c.TrustedProxies = e.list("TRUSTED_PROXIES", "")
	for _, p := range c.TrustedProxies {
		if _, err := netip.ParsePrefix(p); err != nil {
			if _, err := netip.ParseAddr(p); err != nil {
				e.fail(fmt.Errorf("TRUSTED_PROXIES: %q is not a CIDR or an IP address", p))
			}
		}
	}
	switch f := e.str("LOG_FORMAT", "text"); f {
	case "text":
	case "json":
		c.LogJSON = true
	default:
		e.fail(fmt.Errorf("LOG_FORMAT=%q: want text or json", f))
	}
}

// loadBlocking reads the abuse guard's variables and the upstream budget.
func (e *envReader) loadBlocking(c *config) {
	c.BlockThreshold = e.integer("VOICE_AGENT_BLOCK_THRESHOLD", 10, 0, 1_000_000)
	c.BlockWindow = e.duration("VOICE_AGENT_BLOCK_WINDOW", 10*time.Minute, time.Second, 24*time.Hour)
	c.BlockDuration = e.duration("VOICE_AGENT_BLOCK_DURATION", 15*time.Minute, time.Second, 7*24*time.Hour)
	if v := strings.TrimSpace(e.getenv("VOICE_AGENT_UPSTREAM_RATE")); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r <= 0 || r > 1e6 {
			e.fail(fmt.Errorf("VOICE_AGENT_UPSTREAM_RATE=%q: want mints per second, a number above 0", v))
		} else {
			c.UpstreamRate = rate.Limit(r)
		}
	}
	c.UpstreamBurst = e.integer("VOICE_AGENT_UPSTREAM_BURST", max(1, int(c.UpstreamRate)), 1, 1_000_000)
	if c.UpstreamRate == 0 && strings.TrimSpace(e.getenv("VOICE_AGENT_UPSTREAM_BURST")) != "" {
		e.fail(errors.New("VOICE_AGENT_UPSTREAM_BURST needs VOICE_AGENT_UPSTREAM_RATE"))
	}
}

// loadListeners reads METRICS_ADDR and the TLS key pair (TLS_CERT_FILE,
// TLS_KEY_FILE).
func (e *envReader) loadListeners(c *config) {
	c.MetricsAddr = e.str("METRICS_ADDR", "")
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			e.fail(fmt.Errorf("METRICS_ADDR=%q: want host:port", c.MetricsAddr))
		}
	}
	certFile, keyFile := e.str("TLS_CERT_FILE", ""), e.str("TLS_KEY_FILE", "")
	switch {
	case (certFile == "") != (keyFile == ""):
		e.fail(errors.New("TLS_CERT_FILE and TLS_KEY_FILE: set both (for HTTPS) or neither"))
	case certFile != "":
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			e.fail(fmt.Errorf("TLS_CERT_FILE=%q, TLS_KEY_FILE=%q: %v", certFile, keyFile, err))
		} else {
			c.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		}
	}
}

// refreshLead is how long before expiry the original service's client
// refreshes (refreshThresholdSeconds: 30), as does this repository's.
const refreshLead = 30 * time.Second

// warnings are settings that start but serve some clients badly.
func (c config) warnings() []string {
	var w []string
	if c.TokenTTL < c.RefreshMinInterval+refreshLead {
		w = append(w, fmt.Sprintf("VOICE_AGENT_TOKEN_DURATION=%d (seconds) is under VOICE_AGENT_REFRESH_MIN_INTERVAL=%v plus 30s: "+
			"clients that refresh 30s before expiry, as the original service's does, ask at once for every token they get "+
			"(refused as refresh_too_soon until the interval passes) and churn; make the duration at least %v",
			int(c.TokenTTL/time.Second), c.RefreshMinInterval, c.RefreshMinInterval+refreshLead))
	}
	return w
}

// listenOrigins are the default allowed origins for a server listening on
// addr (host:port, the port as bound): the page's own address, so that the
// demo page works wherever it is served from. A loopback or unspecified
// host is reached as localhost and as 127.0.0.1 (and [::1] for an IPv6
// one), browsers treat those as different origins, so each is allowed.
func (c config) listenOrigins(host, port string) []string {
	scheme := "http://"
	if c.TLS != nil {
		scheme = "https://"
	}
	var hosts []string
	ip, err := netip.ParseAddr(host)
	switch {
	case host == "" || host == "localhost" || err == nil && (ip.IsLoopback() || ip.IsUnspecified()):
		hosts = []string{"localhost", "127.0.0.1"}
		if err == nil && ip.Is6() {
			hosts = append(hosts, "[::1]")
		}
	case err == nil && ip.Is6():
		hosts = []string{"[" + host + "]"}
	default:
		hosts = []string{host}
	}
	if scheme == "http://" && port == "80" || scheme == "https://" && port == "443" {
		port = "" // browsers send the origin without its scheme's default port
	} else {
		port = ":" + port
	}
	var out []string
	for _, h := range hosts {
		out = append(out, scheme+h+port)
	}
	return out
}

// badRune reports characters no key or model name contains.
func badRune(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }

// handlerOptions turns the configuration into realtimeauth options.
func (c config) handlerOptions() ([]realtimeauth.Option, error) {
	minInterval := c.RefreshMinInterval
	if minInterval == 0 {
		minInterval = -1 // 0s in the environment: no minimum, as Limits says it
	}
	opts := []realtimeauth.Option{
		realtimeauth.WithAllowedOrigins(c.AllowedOrigins...),
		realtimeauth.WithTrustedProxies(c.TrustedProxies...),
		realtimeauth.WithLimits(realtimeauth.Limits{
			Sessions:             realtimeauth.Rate{N: c.RateLimit, Per: time.Minute},
			Mints:                realtimeauth.Rate{N: c.MintLimit, Per: time.Minute},
			MaxSessionsPerClient: c.MaxPerClient,
			MaxSessions:          c.MaxSessions,
			TokenTTL:             c.TokenTTL,
			MaxRefreshes:         c.MaxRefreshes,
			MinRefreshInterval:   minInterval,
			UpstreamTimeout:      c.UpstreamTimeout,
		}),
	}
	if c.Redis == nil { // with Redis, the abuse guard is the Redis one
		var guard realtimeauth.AbuseGuard // nil: blocking off
		if c.BlockThreshold > 0 {
			var err error
			if guard, err = realtimeauth.NewMemoryAbuseGuard(c.BlockThreshold, c.BlockWindow, c.BlockDuration); err != nil {
				return nil, err
			}
		}
		opts = append(opts, realtimeauth.WithAbuseGuard(guard))
	}
	if c.UpstreamRate > 0 {
		opts = append(opts, realtimeauth.WithLimits(realtimeauth.Limits{UpstreamRate: c.UpstreamRate, UpstreamBurst: c.UpstreamBurst}))
	}
	return opts, nil
}

package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/realtimeauthtest"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// startServer runs run with env in the background and returns its
// address, its log and a function that stops it and returns run's error.
func startServer(t *testing.T, env map[string]string) (string, *syncBuffer, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, envMap(env), logs, ready) }()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("run returned early: %v\n%s", err, logs.String())
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("the server did not start")
	}
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(20 * time.Second):
			t.Fatal("run did not return")
			return nil
		}
	}
	t.Cleanup(func() { _ = stop() })
	return addr, logs, stop
}

func TestListenOrigins(t *testing.T) {
	plain, secure := config{}, config{TLS: &tls.Config{}}
	for _, tc := range []struct {
		c          config
		host, port string
		want       []string
	}{
		{plain, "localhost", "4321", []string{"http://localhost:4321", "http://127.0.0.1:4321"}},
		{plain, "127.0.0.1", "4321", []string{"http://localhost:4321", "http://127.0.0.1:4321"}},
		{plain, "127.0.0.2", "4321", []string{"http://localhost:4321", "http://127.0.0.1:4321"}},
		{plain, "::1", "4321", []string{"http://localhost:4321", "http://127.0.0.1:4321", "http://[::1]:4321"}},
		{plain, "", "8080", []string{"http://localhost:8080", "http://127.0.0.1:8080"}},
		{plain, "0.0.0.0", "8080", []string{"http://localhost:8080", "http://127.0.0.1:8080"}},
		{plain, "app.example.com", "8080", []string{"http://app.example.com:8080"}},
		{plain, "192.0.2.10", "80", []string{"http://192.0.2.10"}},
		{plain, "2001:db8::1", "8443", []string{"http://[2001:db8::1]:8443"}},
		{secure, "localhost", "443", []string{"https://localhost", "https://127.0.0.1"}},
		{secure, "app.example.com", "8443", []string{"https://app.example.com:8443"}},
	} {
		assert.Equal(t, tc.want, tc.c.listenOrigins(tc.host, tc.port), "%s:%s", tc.host, tc.port)
	}
}

// TestRunExplicitOrigins: a set ALLOWED_ORIGINS is the whole list; the
// other loopback spelling is refused.
func TestRunExplicitOrigins(t *testing.T) {
	addr, _, _ := startServer(t, map[string]string{"ADDR": "127.0.0.1:0", "ALLOWED_ORIGINS": "https://app.example.com"})
	_, port, _ := net.SplitHostPort(addr)
	for origin, want := range map[string]int{"https://app.example.com": 200, "http://127.0.0.1:" + port: 403} {
		req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/api/voice-agent/token", nil)
		require.NoError(t, err)
		req.Header.Set("Origin", origin)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, want, resp.StatusCode, origin)
	}
}

// TestDemoOriginCheck: the page's question when its module did not load.
func TestDemoOriginCheck(t *testing.T) {
	logs := &syncBuffer{}
	mux := http.NewServeMux()
	allowed := []string{"http://localhost:4321", "https://*.example.com"}
	ev := &realtimeauthtest.Events{}
	h, err := realtimeauth.New(realtimeauth.NewDevMinter(nil), realtimeauth.WithAllowedOrigins(allowed...),
		realtimeauth.WithEventHook(ev.Hook), realtimeauth.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	require.NoError(t, err)
	registerDemo(mux, slog.New(slog.NewTextHandler(logs, nil)), h, allowed)
	ask := func(origin string) map[string]any {
		r := httptest.NewRequest(http.MethodPost, "/demo/origin", nil)
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		require.Equal(t, http.StatusOK, w.Code)
		assert.Equal(t, "no-store", w.Header().Get("Cache-Control"))
		var m map[string]any
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &m))
		return m
	}
	assert.Equal(t, map[string]any{"origin": "http://localhost:4321", "allowed": true,
		"allowedOrigins": []any{"http://localhost:4321", "https://*.example.com"}}, ask("http://localhost:4321"))
	assert.Equal(t, true, ask("https://a.example.com")["allowed"])
	assert.Empty(t, logs.String())
	for _, o := range []string{"http://127.0.0.1:4321", "https://example.com", "https://evilexample.com", "http://a.example.com", "null", ""} {
		assert.Equal(t, false, ask(o)["allowed"], o)
	}
	ask("http://127.0.0.1:4321")
	assert.Equal(t, 1, strings.Count(logs.String(), "origin=http://127.0.0.1:4321"), "logged once per origin")
	assert.Empty(t, ev.All(), "asking the handler is no event (and no strike)")
	assert.Contains(t, logs.String(), "ALLOWED_ORIGINS")

	r := httptest.NewRequest(http.MethodGet, "/demo/origin", nil)
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, r)
	assert.Equal(t, http.StatusMethodNotAllowed, w.Code)

	// The page loads the boot script before the module, so that it can
	// see the module fail.
	w = httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
	page := w.Body.String()
	boot, mod := strings.Index(page, `<script src="/demo-boot.js"></script>`), strings.Index(page, `<script type="module" src="/demo.js">`)
	require.True(t, boot >= 0 && mod > boot, page)
	w = httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/demo-boot.js", nil))
	assert.Equal(t, http.StatusOK, w.Code)
	assert.Contains(t, w.Body.String(), `fetch("/demo/origin", { method: "POST" })`)
}

func TestConfigTokenDurationAgainstInterval(t *testing.T) {
	for _, env := range []map[string]string{
		{"VOICE_AGENT_TOKEN_DURATION": "10"}, // the default interval is 10s
		{"VOICE_AGENT_TOKEN_DURATION": "30", "VOICE_AGENT_REFRESH_MIN_INTERVAL": "45s"},
	} {
		_, err := loadConfig(envMap(env))
		require.Error(t, err, env)
		assert.Contains(t, err.Error(), "VOICE_AGENT_TOKEN_DURATION")
		assert.Contains(t, err.Error(), "VOICE_AGENT_REFRESH_MIN_INTERVAL")
		assert.Contains(t, err.Error(), "no refresh could succeed")
	}
	for _, tc := range []struct {
		duration, interval string
		warn               bool
	}{
		{"60", "", false}, // the defaults
		{"40", "", false}, // exactly interval + 30s
		{"39", "", true},
		{"11", "", true},
		{"10", "0s", true},
		{"90", "1m", false},
		{"89", "1m", true},
	} {
		c, err := loadConfig(envMap(map[string]string{"VOICE_AGENT_TOKEN_DURATION": tc.duration, "VOICE_AGENT_REFRESH_MIN_INTERVAL": tc.interval}))
		require.NoError(t, err, tc)
		w := c.warnings()
		if !tc.warn {
			assert.Empty(t, w, tc)
			continue
		}
		require.Len(t, w, 1, tc)
		assert.Contains(t, w[0], "VOICE_AGENT_TOKEN_DURATION="+tc.duration)
		assert.Contains(t, w[0], "VOICE_AGENT_REFRESH_MIN_INTERVAL")
	}
}

// TestRunWarnsAndRefusesDurations: through run, the refusal stops it and
// the warning is logged at start.
func TestRunWarnsAndRefusesDurations(t *testing.T) {
	err := run(context.Background(), envMap(map[string]string{"ADDR": "127.0.0.1:0", "VOICE_AGENT_TOKEN_DURATION": "10"}), io.Discard, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "VOICE_AGENT_REFRESH_MIN_INTERVAL")
	_, logs, _ := startServer(t, map[string]string{"ADDR": "127.0.0.1:0", "VOICE_AGENT_TOKEN_DURATION": "20"})
	assert.Contains(t, logs.String(), "level=WARN msg=\"VOICE_AGENT_TOKEN_DURATION=20 (seconds) is under VOICE_AGENT_REFRESH_MIN_INTERVAL=10s plus 30s")
}

func TestConfigAPIKeyFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	c, err := loadConfig(envMap(map[string]string{"OPENAI_API_KEY_FILE": write("key", "  sk-from-file-123\n")}))
	require.NoError(t, err)
	assert.Equal(t, "sk-from-file-123", c.APIKey, "whitespace trimmed")
	assert.False(t, c.DevMode())

	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"OPENAI_API_KEY_FILE": write("key2", "sk-a"), "OPENAI_API_KEY": "sk-b"}, "both set"},
		{map[string]string{"OPENAI_API_KEY_FILE": filepath.Join(dir, "missing")}, "no such file"},
		{map[string]string{"OPENAI_API_KEY_FILE": write("empty", " \n")}, "empty"},
		{map[string]string{"OPENAI_API_KEY_FILE": write("spaced", "sk-secret part\n")}, "contains a space"},
	} {
		_, err := loadConfig(envMap(tc.env))
		require.Error(t, err, tc.env)
		assert.Contains(t, err.Error(), "OPENAI_API_KEY_FILE")
		assert.Contains(t, err.Error(), tc.want)
		assert.NotContains(t, err.Error(), "sk-secret", "never the key")
		assert.NotContains(t, err.Error(), "sk-a")
	}
}

// selfSigned writes a certificate for localhost and 127.0.0.1 and its key,
// and returns their paths and a pool that trusts it.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "realtimeauth test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600))
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestRunTLS(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	addr, logs, stop := startServer(t, map[string]string{"ADDR": "127.0.0.1:0", "TLS_CERT_FILE": certFile, "TLS_KEY_FILE": keyFile})
	_, port, _ := net.SplitHostPort(addr)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer client.CloseIdleConnections()

	req, err := http.NewRequest(http.MethodPost, "https://"+addr+"/api/voice-agent/token", nil)
	require.NoError(t, err)
	req.Header.Set("Origin", "https://localhost:"+port) // the default origins are https now
	resp, err := client.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	assert.NotNil(t, resp.TLS)
	assert.Equal(t, "max-age=63072000; includeSubDomains", resp.Header.Get("Strict-Transport-Security"))
	assert.Contains(t, logs.String(), "addr=https://"+addr)

	// Plain HTTP to a TLS port gets no token.
	resp, err = http.Post("http://"+addr+"/api/voice-agent/token", "application/json", nil)
	if err == nil {
		resp.Body.Close()
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	}
	require.NoError(t, stop())
}

func TestConfigTLS(t *testing.T) {
	certFile, keyFile, _ := selfSigned(t)
	c, err := loadConfig(envMap(map[string]string{"TLS_CERT_FILE": certFile, "TLS_KEY_FILE": keyFile}))
	require.NoError(t, err)
	require.NotNil(t, c.TLS)
	assert.Len(t, c.TLS.Certificates, 1)
	for _, env := range []map[string]string{
		{"TLS_CERT_FILE": certFile},
		{"TLS_KEY_FILE": keyFile},
		{"TLS_CERT_FILE": keyFile, "TLS_KEY_FILE": certFile},
		{"TLS_CERT_FILE": certFile, "TLS_KEY_FILE": filepath.Join(t.TempDir(), "missing.pem")},
	} {
		_, err := loadConfig(envMap(env))
		require.Error(t, err, env)
		assert.Contains(t, err.Error(), "TLS_CERT_FILE")
		assert.Contains(t, err.Error(), "TLS_KEY_FILE")
	}
}

// TestStartFailsInJSON: with LOG_FORMAT=json even the fatal start-up error
// is one JSON line.
func TestStartFailsInJSON(t *testing.T) {
	var out bytes.Buffer
	code := start(context.Background(), envMap(map[string]string{"LOG_FORMAT": "json", "VOICE_AGENT_RATE_LIMIT": "lots", "ADDR": "x"}), &out)
	assert.Equal(t, 1, code)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 1, out.String())
	var line map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &line))
	assert.Equal(t, "ERROR", line["level"])
	assert.Contains(t, line["msg"], "VOICE_AGENT_RATE_LIMIT")
	assert.Contains(t, line["msg"], "ADDR")

	out.Reset()
	assert.Equal(t, 1, start(context.Background(), envMap(map[string]string{"VOICE_AGENT_RATE_LIMIT": "lots"}), &out))
	assert.True(t, strings.HasPrefix(out.String(), "time="), "text otherwise: %s", out.String())
}

// TestJSONDurationsInSeconds: durations are numbers of seconds.
func TestJSONDurationsInSeconds(t *testing.T) {
	var out bytes.Buffer
	newLogger(true, &out).Warn("x", "retry_after", 1500*time.Millisecond, "n", 3)
	var line map[string]any
	require.NoError(t, json.Unmarshal(out.Bytes(), &line))
	assert.Equal(t, 1.5, line["retry_after"])
	assert.Equal(t, 3.0, line["n"])
}

// TestRedisLogsThroughSlog: go-redis's own lines go through the server's
// logger, as JSON with LOG_FORMAT=json.
func TestRedisLogsThroughSlog(t *testing.T) {
	var out syncBuffer
	routeRedisLog(newLogger(true, &out))
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	// go-redis logs the truncation of a sub-millisecond expiry itself.
	_ = client.Set(ctx, "k", "v", 500*time.Microsecond).Err()
	require.NotEmpty(t, out.String())
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var line map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &line), l)
		assert.Equal(t, "go-redis", line["component"])
	}
	assert.Contains(t, out.String(), "minimal supported value")
}

// TestRunMetrics: METRICS_ADDR serves /metrics on its own listener, fed by
// the handler; unset, there is none.
func TestRunMetrics(t *testing.T) {
	addr, logs, _ := startServer(t, map[string]string{"ADDR": "127.0.0.1:0", "METRICS_ADDR": "127.0.0.1:0"})
	m := regexp.MustCompile(`serving Prometheus metrics" addr=(http://\S+/metrics)`).FindStringSubmatch(logs.String())
	require.NotNil(t, m, logs.String())
	resp, err := http.Post("http://"+addr+"/api/voice-agent/token", "application/json", nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	resp, err = http.Get(m[1])
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	text := string(body)
	assert.Contains(t, text, `realtimeauth_events_total{code="",event="token_issued"} 1`)
	assert.Contains(t, text, `realtimeauth_request_duration_seconds_count{class="2xx"} 1`)
	assert.Contains(t, text, "realtimeauth_active_sessions 1")
	assert.Contains(t, text, `realtimeauth_service_status{service="sessionTracking",status="operational"} 1`)

	resp, err = http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode, "not on the public listener")

	_, logs, _ = startServer(t, map[string]string{"ADDR": "127.0.0.1:0"})
	assert.NotContains(t, logs.String(), "metrics")

	_, err = loadConfig(envMap(map[string]string{"METRICS_ADDR": "9090"}))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "METRICS_ADDR")
	err = run(context.Background(), envMap(map[string]string{"ADDR": "127.0.0.1:0", "METRICS_ADDR": "192.0.2.1:1"}), io.Discard, nil)
	require.Error(t, err, "an address it cannot listen on stops it")
	assert.Contains(t, err.Error(), "METRICS_ADDR")
}

// TestRunClientCaps: VOICE_AGENT_MAX_SESSIONS_PER_CLIENT evicts a client's
// least recently used session, VOICE_AGENT_MINT_LIMIT counts every mint.
func TestRunClientCaps(t *testing.T) {
	addr, _, _ := startServer(t, map[string]string{"ADDR": "127.0.0.1:0", "VOICE_AGENT_MAX_SESSIONS_PER_CLIENT": "1",
		"VOICE_AGENT_MINT_LIMIT": "3", "VOICE_AGENT_REFRESH_MIN_INTERVAL": "0s"})
	post := func(path, body string) (int, map[string]any) {
		t.Helper()
		resp, err := http.Post("http://"+addr+"/api/voice-agent"+path, "application/json", strings.NewReader(body))
		require.NoError(t, err)
		defer resp.Body.Close()
		var m map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&m))
		return resp.StatusCode, m
	}
	_, a := post("/token", "")
	_, b := post("/token", "")
	refresh := func(m map[string]any) string { return `{"sessionId":"` + m["sessionId"].(string) + `"}` }
	status, m := post("/refresh-token", refresh(a))
	assert.Equal(t, http.StatusNotFound, status, "evicted by the second: %v", m)
	assert.Equal(t, "session_not_found", m["code"])
	status, _ = post("/refresh-token", refresh(b))
	assert.Equal(t, http.StatusOK, status)
	status, m = post("/refresh-token", refresh(b))
	assert.Equal(t, http.StatusTooManyRequests, status, "the fourth mint: %v", m)
	assert.Equal(t, "rate_limited", m["code"])
}

// TestRunJSONStrayLines: with LOG_FORMAT=json, a line written through the
// log package or slog.Default by any library is JSON too.
func TestRunJSONStrayLines(t *testing.T) {
	_, logs, stop := startServer(t, map[string]string{"ADDR": "127.0.0.1:0", "LOG_FORMAT": "json"})
	log.Printf("a library's own line")
	slog.Info("another one", "wait", 2*time.Second)
	require.NoError(t, stop())
	text := logs.String()
	assert.Contains(t, text, "a library's own line")
	assert.Contains(t, text, `"wait":2`)
	for _, l := range strings.Split(strings.TrimSpace(text), "\n") {
		assert.True(t, json.Valid([]byte(l)), l)
	}
}

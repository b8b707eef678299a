package main

import (
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"
)

func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestConfigDefaults(t *testing.T) {
	c, err := loadConfig(envMap(nil))
	require.NoError(t, err)
	assert.Equal(t, config{
		Addr:               "localhost:4321",
		BaseURL:            "https://api.openai.com/v1",
		Model:              "gpt-realtime",
		RateLimit:          10,
		MintLimit:          30,
		MaxPerClient:       10,
		MaxSessions:        1_000_000,
		TokenTTL:           60 * time.Second,
		MaxRefreshes:       120,
		RefreshMinInterval: 10 * time.Second,
		UpstreamTimeout:    10 * time.Second,
		BlockThreshold:     10,
		BlockWindow:        10 * time.Minute,
		BlockDuration:      15 * time.Minute,
		UpstreamBurst:      1,
		Calls:              callSettings{MaxPerClient: 2, Sideband: true},
	}, c)
	assert.True(t, c.DevMode())
	opts, err := c.handlerOptions()
	require.NoError(t, err)
	_, err = realtimeauth.New(realtimeauth.NewDevMinter(nil), opts...)
	assert.NoError(t, err, "the defaults make a valid handler")
}

// TestHandlerOptionsBadGuard: handlerOptions passes the abuse guard's
// error on (loadConfig's ranges keep the environment from reaching it; a
// config built another way can).
func TestHandlerOptionsBadGuard(t *testing.T) {
	c, err := loadConfig(envMap(nil))
	require.NoError(t, err)
	c.BlockWindow = 0
	opts, err := c.handlerOptions()
	require.ErrorContains(t, err, "NewMemoryAbuseGuard: window 0s")
	assert.Nil(t, opts)
	c.BlockThreshold = 0 // blocking off: no guard to build
	_, err = c.handlerOptions()
	assert.NoError(t, err)
}

// TestConfigVariables: for every variable, a good value is read and a bad
// one refused with an error naming the variable.
func TestConfigVariables(t *testing.T) {
	tests := []struct {
		name  string
		good  string
		check func(t *testing.T, c config)
		bad   []string
	}{
		{"ADDR", "127.0.0.1:8080", func(t *testing.T, c config) { assert.Equal(t, "127.0.0.1:8080", c.Addr) },
			[]string{"localhost", "http://x:1"}},
		{"OPENAI_API_KEY", "sk-test-123", func(t *testing.T, c config) {
			assert.Equal(t, "sk-test-123", c.APIKey)
			assert.False(t, c.DevMode())
		}, []string{"sk-a b"}},
		{"OPENAI_BASE_URL", "https://proxy.example.com/v1", func(t *testing.T, c config) { assert.Equal(t, "https://proxy.example.com/v1", c.BaseURL) },
			[]string{"ftp://x/v1", "/v1", "https://u:p@x/v1"}},
		{"OPENAI_REALTIME_MODEL", "gpt-realtime-mini", func(t *testing.T, c config) { assert.Equal(t, "gpt-realtime-mini", c.Model) },
			[]string{"gpt realtime", "a\x00b"}},
		{"ALLOWED_ORIGINS", "https://app.example.com, https://*.example.org:8443", func(t *testing.T, c config) {
			assert.Equal(t, []string{"https://app.example.com", "https://*.example.org:8443"}, c.AllowedOrigins)
		}, []string{"app.example.com", "https://app.example.com/", "null", "https://app.example.com/path", "*,https://a.example.com"}},
		{"VOICE_AGENT_RATE_LIMIT", "25", func(t *testing.T, c config) { assert.Equal(t, 25, c.RateLimit) },
			[]string{"0", "-1", "ten", "1.5", "99999999"}},
		{"VOICE_AGENT_MINT_LIMIT", "60", func(t *testing.T, c config) { assert.Equal(t, 60, c.MintLimit) },
			[]string{"0", "1024", "lots", "2.5"}},
		{"VOICE_AGENT_MAX_SESSIONS_PER_CLIENT", "3", func(t *testing.T, c config) { assert.Equal(t, 3, c.MaxPerClient) },
			[]string{"0", "-1", "1000001", "ten"}},
		{"VOICE_AGENT_MAX_SESSIONS", "5000", func(t *testing.T, c config) { assert.Equal(t, 5000, c.MaxSessions) },
			[]string{"0", "100000001", "1e6"}},
		{"VOICE_AGENT_TOKEN_DURATION", "120", func(t *testing.T, c config) { assert.Equal(t, 2*time.Minute, c.TokenTTL) },
			[]string{"9", "7201", "60s", "10"}},
		{"VOICE_AGENT_MAX_REFRESHES", "5", func(t *testing.T, c config) { assert.Equal(t, 5, c.MaxRefreshes) },
			[]string{"0", "1000001", "x"}},
		{"VOICE_AGENT_REFRESH_MIN_INTERVAL", "30s", func(t *testing.T, c config) { assert.Equal(t, 30*time.Second, c.RefreshMinInterval) },
			[]string{"10", "-1s", "2h"}},
		{"VOICE_AGENT_UPSTREAM_TIMEOUT", "5s", func(t *testing.T, c config) { assert.Equal(t, 5*time.Second, c.UpstreamTimeout) },
			[]string{"50ms", "3m", "soon"}},
		{"TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.1", func(t *testing.T, c config) { assert.Equal(t, []string{"10.0.0.0/8", "192.0.2.1"}, c.TrustedProxies) },
			[]string{"10.0.0.0/33", "proxy.local"}},
		{"LOG_FORMAT", "json", func(t *testing.T, c config) { assert.True(t, c.LogJSON) },
			[]string{"xml"}},
		{"VOICE_AGENT_BLOCK_THRESHOLD", "0", func(t *testing.T, c config) { assert.Equal(t, 0, c.BlockThreshold) },
			[]string{"-1", "many"}},
		{"VOICE_AGENT_BLOCK_WINDOW", "1h", func(t *testing.T, c config) { assert.Equal(t, time.Hour, c.BlockWindow) },
			[]string{"0s", "60", "25h"}},
		{"VOICE_AGENT_BLOCK_DURATION", "30m", func(t *testing.T, c config) { assert.Equal(t, 30*time.Minute, c.BlockDuration) },
			[]string{"0s", "15", "200h"}},
		{"VOICE_AGENT_UPSTREAM_RATE", "2.5", func(t *testing.T, c config) {
			assert.Equal(t, rate.Limit(2.5), c.UpstreamRate)
			assert.Equal(t, 2, c.UpstreamBurst)
		}, []string{"0", "-1", "fast"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := loadConfig(envMap(map[string]string{tc.name: tc.good}))
			require.NoError(t, err)
			tc.check(t, c)
			opts, err := c.handlerOptions()
			require.NoError(t, err)
			_, err = realtimeauth.New(realtimeauth.NewDevMinter(nil), opts...)
			assert.NoError(t, err, "a good value makes a valid handler")
			for _, bad := range tc.bad {
				_, err := loadConfig(envMap(map[string]string{tc.name: bad}))
				if assert.Error(t, err, "%s=%q", tc.name, bad) {
					assert.Contains(t, err.Error(), tc.name)
					if tc.name == "OPENAI_API_KEY" {
						assert.NotContains(t, err.Error(), bad, "the key is never printed")
					}
				}
			}
		})
	}
}

func TestConfigUpstreamBurst(t *testing.T) {
	c, err := loadConfig(envMap(map[string]string{"VOICE_AGENT_UPSTREAM_RATE": "10", "VOICE_AGENT_UPSTREAM_BURST": "30"}))
	require.NoError(t, err)
	assert.Equal(t, 30, c.UpstreamBurst)
	for _, bad := range []map[string]string{
		{"VOICE_AGENT_UPSTREAM_BURST": "5"}, // without a rate
		{"VOICE_AGENT_UPSTREAM_RATE": "1", "VOICE_AGENT_UPSTREAM_BURST": "0"},
		{"VOICE_AGENT_UPSTREAM_RATE": "1", "VOICE_AGENT_UPSTREAM_BURST": "x"},
	} {
		_, err := loadConfig(envMap(bad))
		require.Error(t, err)
		assert.Contains(t, err.Error(), "VOICE_AGENT_UPSTREAM_BURST")
	}
}

// TestConfigReportsEveryError: several bad variables are all named.
func TestConfigReportsEveryError(t *testing.T) {
	_, err := loadConfig(envMap(map[string]string{"ADDR": "x", "VOICE_AGENT_RATE_LIMIT": "0", "LOG_FORMAT": "yaml"}))
	require.Error(t, err)
	for _, name := range []string{"ADDR", "VOICE_AGENT_RATE_LIMIT", "LOG_FORMAT"} {
		assert.Contains(t, err.Error(), name)
	}
}

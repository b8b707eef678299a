package main

import (
	"bytes"
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/redisstore/redistest"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestRedisURLUnset(t *testing.T) {
	cfg, err := loadConfig(env(nil))
	require.NoError(t, err)
	assert.Nil(t, cfg.Redis, "state stays in memory")
	opts, err := cfg.handlerOptions()
	require.NoError(t, err)
	_, err = realtimeauth.New(realtimeauth.NewDevMinter(nil), opts...)
	assert.NoError(t, err)
}

func TestRedisURL(t *testing.T) {
	cfg, err := loadConfig(env(map[string]string{"REDIS_URL": " redis://app:s3cret@10.1.2.3:6380/2 ", "VOICE_AGENT_RATE_LIMIT": "25"}))
	require.NoError(t, err)
	require.NotNil(t, cfg.Redis)
	assert.Equal(t, "10.1.2.3:6380", cfg.Redis.Addr)
	assert.Equal(t, 2, cfg.Redis.DB)
	assert.Equal(t, "app", cfg.Redis.Username)
	assert.Equal(t, "s3cret", cfg.Redis.Password)
	assert.Nil(t, cfg.Redis.TLSConfig)
	assert.True(t, cfg.Redis.ContextTimeoutEnabled, "calls end with the request")
	assert.Equal(t, time.Second, cfg.Redis.ReadTimeout)

	// The handler options build a handler (the store comes from Redis).
	opts, err := cfg.handlerOptions()
	require.NoError(t, err)
	_, err = realtimeauth.New(realtimeauth.NewDevMinter(nil), opts...)
	assert.NoError(t, err)

	tls, err := loadConfig(env(map[string]string{"REDIS_URL": "rediss://redis.example.com:6379?read_timeout=5s"}))
	require.NoError(t, err)
	assert.NotNil(t, tls.Redis.TLSConfig)
	assert.Equal(t, 5*time.Second, tls.Redis.ReadTimeout, "the URL's timeouts win")
}

func TestRedisURLRefused(t *testing.T) {
	for _, v := range []string{
		"http://app:s3cret@localhost:6379",
		"redis://app:s3cret@localhost:notaport",
		"redis://app:s3cret@localhost:6379/notadb",
		"redis://app:s3cret@local host:6379",
		"::not a url s3cret",
	} {
		t.Run(v, func(t *testing.T) {
			_, err := loadConfig(env(map[string]string{"REDIS_URL": v}))
			require.Error(t, err)
			assert.Contains(t, err.Error(), "REDIS_URL")
			assert.NotContains(t, err.Error(), "s3cret", "the password stays out of the message")
		})
	}
}

// TestRunRedisUnreachable: with REDIS_URL pointing where nothing listens,
// the server refuses to start, saying where Redis was expected, and neither
// the error nor the log carries the password.
func TestRunRedisUnreachable(t *testing.T) {
	var logs bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := run(ctx, env(map[string]string{"ADDR": "127.0.0.1:0", "REDIS_URL": "redis://app:s3cret@127.0.0.1:1/0"}), &logs, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "redis at 127.0.0.1:1")
	assert.NotContains(t, err.Error()+logs.String(), "s3cret")
}

// TestRunWithRedis starts the example server on a real, password-protected
// redis-server: it says it keeps its state there, without the password,
// and the state lands in Redis.
func TestRunWithRedis(t *testing.T) {
	srv := redistest.Start(t, "--requirepass", "s3cret")
	var logs bytes.Buffer // slog writes one line at a time; read after run returned
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, env(map[string]string{"ADDR": "127.0.0.1:0", "REDIS_URL": "redis://:s3cret@" + srv.Addr + "/3"}), &logs, ready)
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("run: %v\n%s", err, logs.String())
	}
	res, err := http.Post("http://"+addr+"/api/voice-agent/token", "", nil)
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusOK, res.StatusCode)
	cancel()
	require.NoError(t, <-done)

	assert.Contains(t, logs.String(), "in Redis")
	assert.Contains(t, logs.String(), srv.Addr)
	assert.NotContains(t, logs.String(), "s3cret")
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, Password: "s3cret", DB: 3})
	defer rdb.Close()
	keys, err := rdb.Keys(context.Background(), "*}:s:*").Result() // session hashes (see redisstore's Keys)
	require.NoError(t, err)
	assert.Len(t, keys, 1, "the session is in Redis")
}

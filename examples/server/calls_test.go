package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/realtimeauth/realtimeauth/realtimeauthtest"
	"github.com/realtimeauth/realtimeauth/redisstore/redistest"
	"github.com/realtimeauth/realtimeauth/sideband/sidebandtest"
)

func TestCallSettings(t *testing.T) {
	cfg, err := loadConfig(env(nil))
	require.NoError(t, err)
	assert.Equal(t, callSettings{MaxPerClient: 2, Sideband: true}, cfg.Calls, "defaults: no maximum, 2 per client, the sideband on")
	cfg, err = loadConfig(env(map[string]string{"VOICE_AGENT_MAX_CALL_DURATION": "15m",
		"VOICE_AGENT_MAX_CALLS_PER_CLIENT": "5", "VOICE_AGENT_CALL_SIDEBAND": "off"}))
	require.NoError(t, err)
	assert.Equal(t, callSettings{MaxDuration: 15 * time.Minute, MaxPerClient: 5}, cfg.Calls)
	cfg, err = loadConfig(env(map[string]string{"VOICE_AGENT_MAX_CALL_DURATION": "90"}))
	require.NoError(t, err)
	assert.Equal(t, 90*time.Second, cfg.Calls.MaxDuration, "whole seconds")
	for k, v := range map[string]string{
		"VOICE_AGENT_MAX_CALL_DURATION":    "5s",
		"VOICE_AGENT_MAX_CALLS_PER_CLIENT": "0",
		"VOICE_AGENT_CALL_SIDEBAND":        "maybe",
	} {
		_, err := loadConfig(env(map[string]string{k: v}))
		require.Error(t, err, k)
		assert.Contains(t, err.Error(), k)
	}
	_, err = loadConfig(env(map[string]string{"VOICE_AGENT_MAX_CALL_DURATION": "2h"}))
	assert.ErrorContains(t, err, "10s..60m")
}

// TestTwoServersOneRedisHangUpOnce runs two example servers on one real
// Redis against a fake OpenAI (calls, hang-up, sideband). The one that
// made a call stops before the call's deadline (its handler closed, no
// cleanup of the call); the other hangs the call up at the deadline,
// within a second, and only once.
func TestTwoServersOneRedisHangUpOnce(t *testing.T) {
	rds := redistest.Start(t)
	up := &realtimeauthtest.Upstream{Key: "sk-two-servers"}
	up.Sideband = &sidebandtest.Handler{Upstream: up}
	var mu sync.Mutex
	hungAt := map[string][]time.Time{}
	up.Fail = func(r *http.Request) int {
		if id, ok := strings.CutSuffix(r.URL.Path, "/hangup"); ok {
			mu.Lock()
			id = id[strings.LastIndex(id, "/")+1:]
			hungAt[id] = append(hungAt[id], time.Now())
			mu.Unlock()
		}
		return 0
	}
	upSrv := httptest.NewServer(up)
	t.Cleanup(upSrv.Close)
	vars := map[string]string{
		"ADDR": "127.0.0.1:0", "OPENAI_API_KEY": "sk-two-servers", "OPENAI_BASE_URL": upSrv.URL + "/v1",
		"REDIS_URL": "redis://" + rds.Addr + "/0", "VOICE_AGENT_MAX_CALL_DURATION": "10s",
	}
	addrA, _, stopA := startServer(t, vars)
	addrB, _, _ := startServer(t, vars)
	place := func(addr string) (string, time.Time) {
		t.Helper()
		res, err := http.Post("http://"+addr+"/api/voice-agent/calls", "application/sdp",
			strings.NewReader("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"))
		require.NoError(t, err)
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		require.Equal(t, http.StatusCreated, res.StatusCode, string(body))
		return strings.TrimPrefix(res.Header.Get("Location"), "/api/voice-agent/calls/"), time.Now()
	}
	first, placedAt := place(addrA)
	require.NoError(t, stopA(), "A stops before the deadline")
	second, _ := place(addrB)
	// Polling a fake upstream that real servers drive in real time, bounded.
	deadline := time.Now().Add(20 * time.Second)
	for up.Live(second) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	require.False(t, up.Live(second), "B hung up its own call at its deadline")
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, hungAt[first], 1, "A's call is hung up once, by B, though A is gone")
	late := hungAt[first][0].Sub(placedAt.Add(10 * time.Second))
	assert.Less(t, late, time.Second, "within a second of the deadline")
	assert.Greater(t, late, -200*time.Millisecond, "not before it")
	assert.Len(t, hungAt[second], 1)
	t.Logf("A's call hung up %v after its deadline", late)
}

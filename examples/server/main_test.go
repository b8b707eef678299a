package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth/realtimeauthtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type syncBuffer = realtimeauthtest.Buffer

// TestRun starts the server in dev mode, gets a dev token, then cancels
// the context while a request is in flight: the request finishes and run
// returns nil.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := &syncBuffer{}
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, envMap(map[string]string{"ADDR": "127.0.0.1:0"}), logs, ready)
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("run returned early: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not start")
	}
	assert.Contains(t, logs.String(), "DEV MODE")
	base := "http://" + addr + "/api/voice-agent"

	// Unset, ALLOWED_ORIGINS follows ADDR, both loopback spellings, and
	// the log says which.
	_, port, _ := net.SplitHostPort(addr)
	for _, o := range []string{"http://localhost:" + port, "http://127.0.0.1:" + port} {
		assert.Contains(t, logs.String(), o+"/", "the demo page's addresses are printed")
	}
	req, err := http.NewRequest(http.MethodPost, base+"/token", nil)
	require.NoError(t, err)
	req.Header.Set("Origin", "http://localhost:"+port)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	var tok struct {
		Success   bool   `json:"success"`
		Token     string `json:"token"`
		SessionID string `json:"sessionId"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&tok))
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "http://localhost:"+port, resp.Header.Get("Access-Control-Allow-Origin"))
	assert.True(t, tok.Success)
	assert.True(t, strings.HasPrefix(tok.Token, "ek_dev_"), tok.Token)
	assert.NotContains(t, logs.String(), tok.Token, "no full token in the log")

	// A slow request: headers now, body later. Expect: 100-continue tells
	// us when the handler has started reading it.
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(20*time.Second)))
	body := `{"model":"gpt-realtime"}`
	_, err = io.WriteString(conn, "POST /api/voice-agent/token HTTP/1.1\r\nHost: "+addr+
		"\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: "+
		strconv.Itoa(len(body))+"\r\n\r\n")
	require.NoError(t, err)
	br := bufio.NewReader(conn)
	line, err := br.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "HTTP/1.1 100 Continue\r\n", line)
	_, _ = br.ReadString('\n') // the blank line after it

	cancel() // SIGINT, as far as run can tell
	// Wait until the server stops accepting: shutdown has begun.
	require.Eventually(t, func() bool {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			return true
		}
		c.Close()
		return false
	}, 10*time.Second, 10*time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("run returned with a request in flight: %v", err)
	default:
	}

	_, err = io.WriteString(conn, body)
	require.NoError(t, err)
	resp, err = http.ReadResponse(br, nil)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode, string(b))
	assert.Contains(t, string(b), "ek_dev_")

	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return")
	}
	assert.Contains(t, logs.String(), "stopped")
}

// TestRunRefusesBadConfiguration: a bad variable stops run before it
// listens, naming the variable.
func TestRunRefusesBadConfiguration(t *testing.T) {
	err := run(context.Background(), envMap(map[string]string{"ADDR": "127.0.0.1:0", "VOICE_AGENT_RATE_LIMIT": "lots"}), io.Discard, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "VOICE_AGENT_RATE_LIMIT")
}

// TestRunJSONLogs: LOG_FORMAT=json logs JSON, and an API key never
// appears in the log.
func TestRunJSONLogs(t *testing.T) {
	const key = "sk-test-NEVERLOGGED"
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, envMap(map[string]string{"ADDR": "127.0.0.1:0", "LOG_FORMAT": "json", "OPENAI_API_KEY": key,
			"OPENAI_BASE_URL": "http://127.0.0.1:1/v1"}), logs, ready)
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("run returned early: %v", err)
	}
	cancel()
	require.NoError(t, <-done)
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		assert.True(t, json.Valid([]byte(line)), line)
	}
	assert.NotContains(t, logs.String(), key)
	assert.NotContains(t, logs.String(), "DEV MODE")
}

package tokenclient_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/realtimeauth/realtimeauth/tokenclient"
)

func TestNewRejects(t *testing.T) {
	tests := []struct {
		name string
		base string
		opts []tokenclient.Option
		want string // in the error
	}{
		{"empty URL", "", nil, "base URL"},
		{"not http", "ftp://example.com/api", nil, "base URL"},
		{"no host", "https:///api", nil, "base URL"},
		{"credentials", "https://u:p@example.com/api", nil, "base URL"},
		{"query", "https://example.com/api?x=1", nil, "base URL"},
		{"fragment", "https://example.com/api#x", nil, "base URL"},
		{"unparsable", "https://exa mple.com/", nil, "base URL"},
		{"nil option", "https://example.com/api", []tokenclient.Option{nil}, "nil Option"},
		{"nil HTTP client", "https://example.com/api", []tokenclient.Option{tokenclient.WithHTTPClient(nil)}, "WithHTTPClient"},
		{"negative lead", "https://example.com/api", []tokenclient.Option{tokenclient.WithLeadTime(-time.Second)}, "WithLeadTime"},
		{"negative jitter", "https://example.com/api", []tokenclient.Option{tokenclient.WithJitter(-time.Second)}, "WithJitter"},
		{"negative validity", "https://example.com/api", []tokenclient.Option{tokenclient.WithMinValidity(-time.Second)}, "WithMinValidity"},
		{"zero base", "https://example.com/api", []tokenclient.Option{tokenclient.WithBackoff(0, time.Second, 3)}, "WithBackoff"},
		{"cap below base", "https://example.com/api", []tokenclient.Option{tokenclient.WithBackoff(2*time.Second, time.Second, 3)}, "WithBackoff"},
		{"no attempt", "https://example.com/api", []tokenclient.Option{tokenclient.WithBackoff(time.Second, time.Second, 0)}, "WithBackoff"},
		{"bad header name", "https://example.com/api", []tokenclient.Option{tokenclient.WithHeader("X Bad", "v")}, "WithHeader"},
		{"Content-Type header", "https://example.com/api", []tokenclient.Option{tokenclient.WithHeader("content-type", "text/plain")}, "WithHeader"},
		{"header injection", "https://example.com/api", []tokenclient.Option{tokenclient.WithHeader("X-A", "v\r\nX-B: w")}, "WithHeader"},
		{"nil clock", "https://example.com/api", []tokenclient.Option{tokenclient.WithClock(nil)}, "WithClock"},
		{"nil rand", "https://example.com/api", []tokenclient.Option{tokenclient.WithRand(nil)}, "WithRand"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tokenclient.New(tt.base, tt.opts...)
			require.Error(t, err)
			assert.Nil(t, c)
			assert.Contains(t, err.Error(), tt.want)
			assert.Contains(t, err.Error(), "tokenclient: ")
		})
	}

	t.Run("every bad option is named", func(t *testing.T) {
		_, err := tokenclient.New("https://example.com/api", tokenclient.WithLeadTime(-1), tokenclient.WithJitter(-1))
		require.Error(t, err)
		assert.Contains(t, err.Error(), "WithLeadTime")
		assert.Contains(t, err.Error(), "WithJitter")
	})
}

// The base URL may end in a slash; headers and the caller's HTTP client
// are used for every request.
func TestRequestShape(t *testing.T) {
	h := newHarness(t)
	var got []*http.Request
	real := h.handler
	h.serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Clone(context.Background()))
		real.ServeHTTP(w, r)
	}))
	hc := &http.Client{Transport: http.DefaultTransport}
	c, err := tokenclient.New(h.base+"/", tokenclient.WithClock(skewed{h.timers, 0}),
		tokenclient.WithHTTPClient(hc),
		tokenclient.WithHeader("authorization", "Bearer x"),
		tokenclient.WithHeader("X-Trace", "1"), tokenclient.WithHeader("X-Trace", "2"))
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Token(testCtx(t))
	require.NoError(t, err)
	require.Len(t, got, 1)
	r := got[0]
	assert.Equal(t, http.MethodPost, r.Method)
	assert.Equal(t, "/api/voice-agent/token", r.URL.Path)
	assert.Equal(t, "application/json", r.Header.Get("Content-Type"))
	assert.Equal(t, "Bearer x", r.Header.Get("Authorization"))
	assert.Equal(t, []string{"1", "2"}, r.Header.Values("X-Trace"))
}

// TokenData never prints or logs the token itself.
func TestTokenDataRedacts(t *testing.T) {
	d := tokenclient.TokenData{Token: "ek_secret_value", SessionID: "s-1", ExpiresAt: t0, ExpiresIn: time.Minute}
	for _, s := range []string{
		fmt.Sprint(d), fmt.Sprintf("%v %+v %#v %s", d, d, d, d), fmt.Sprint(&d), fmt.Sprintf("%v", []tokenclient.TokenData{d}),
	} {
		assert.NotContains(t, s, "secret")
		assert.Contains(t, s, "s-1")
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("got", "token", d)
	assert.NotContains(t, buf.String(), "secret")
	assert.Contains(t, buf.String(), `"sessionId":"s-1"`)
}

func TestErrorText(t *testing.T) {
	e := &tokenclient.Error{Endpoint: "/refresh-token", Status: 404, Code: "session_not_found", Message: "session not found or expired", Attempt: 2}
	assert.Equal(t, "tokenclient: POST /refresh-token: 404 Not Found (session_not_found): session not found or expired [attempt 2]", e.Error())
	cause := fmt.Errorf("dial: %w", context.DeadlineExceeded)
	e = &tokenclient.Error{Endpoint: "/token", Attempt: 1, Err: cause}
	assert.Equal(t, "tokenclient: POST /token: dial: context deadline exceeded [attempt 1]", e.Error())
	assert.ErrorIs(t, e, context.DeadlineExceeded)
}

package realtimeauth_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A chunked body (no declared length) is judged by what it holds: empty is
// an empty body whatever its Content-Type, anything else must be JSON.
func TestChunkedBodyContentType(t *testing.T) {
	cases := []struct {
		name, ct, body string
		status         int
		code           realtimeauth.Code
	}{
		{"empty, no content type", "", "", 200, ""},
		{"empty, text/plain", "text/plain", "", 200, ""},
		{"object, no content type", "", "{}", 415, realtimeauth.CodeUnsupportedMediaType},
		{"object, text/plain", "text/plain", "{}", 415, realtimeauth.CodeUnsupportedMediaType},
		{"object, application/json", "application/json", `{"model":"x"}`, 200, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rg := newRig(t)
			r := httptest.NewRequest(http.MethodPost, "/api/voice-agent/token", io.NopCloser(strings.NewReader(tc.body)))
			r.ContentLength = -1 // as a chunked request arrives
			if tc.ct != "" {
				r.Header.Set("Content-Type", tc.ct)
			}
			w := httptest.NewRecorder()
			rg.h.ServeHTTP(w, r)
			if tc.status == 200 {
				assert.Equal(t, 200, w.Code, w.Body.String())
				assert.Equal(t, 1, rg.mint.Calls())
				return
			}
			assertError(t, w, tc.status, tc.code, 0)
			assert.Equal(t, 0, rg.mint.Calls())
		})
	}
}

type ctxKey struct{}

// ctxStore records the context its Count was given.
type ctxStore struct {
	realtimeauth.SessionStore
	seen chan context.Context
}

func (s *ctxStore) Count(ctx context.Context, now time.Time) (int, error) {
	s.seen <- ctx
	return s.SessionStore.Count(ctx, now)
}

// The health endpoint asks the store within the request's context (with a
// deadline of its own), so a client that leaves cancels the store call.
func TestHealthCountUsesRequestContext(t *testing.T) {
	store := &ctxStore{SessionStore: realtimeauth.NewMemoryStore(), seen: make(chan context.Context, 1)}
	rg := newRig(t, realtimeauth.WithSessionStore(store))
	r := httptest.NewRequest(http.MethodGet, "/api/voice-agent/health", nil)
	r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, "request"))
	w := httptest.NewRecorder()
	rg.h.ServeHTTP(w, r)
	require.Equal(t, 200, w.Code)
	ctx := <-store.seen
	assert.Equal(t, "request", ctx.Value(ctxKey{}))
	_, hasDeadline := ctx.Deadline()
	assert.True(t, hasDeadline)

	// Stats, without a request, has its own deadline.
	rg.h.Stats()
	ctx = <-store.seen
	assert.Nil(t, ctx.Value(ctxKey{}))
	_, hasDeadline = ctx.Deadline()
	assert.True(t, hasDeadline)
}

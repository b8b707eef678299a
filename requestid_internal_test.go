package realtimeauth

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMinterLogsNameTheRequest: the OpenAI minter's own log lines (its
// retries) carry the ID of the request they were minting for.
func TestMinterLogsNameTheRequest(t *testing.T) {
	rr := newRetryRig(t, []scriptedAnswer{answer(502), answer(502), answer(502)})
	h, err := New(rr.m, WithLogger(slog.New(slog.DiscardHandler)), WithLimits(Limits{UpstreamTimeout: 10 * time.Second}))
	require.NoError(t, err)
	r := httptest.NewRequest(http.MethodPost, "/api/voice-agent/token", nil)
	r.RemoteAddr = "192.0.2.1:1"
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	require.Equal(t, http.StatusBadGateway, w.Code, w.Body.String())
	id := w.Header().Get("X-Request-Id")
	lines := strings.Split(strings.TrimSpace(rr.log.String()), "\n")
	require.Len(t, lines, 2, "two retries")
	for _, l := range lines {
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &rec))
		assert.Equal(t, id, rec["request_id"])
		assert.IsType(t, float64(0), rec["wait"], "seconds, a number")
	}
}

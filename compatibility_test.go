package realtimeauth_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const compatU = base + "/compatibility"

func compatibility(t *testing.T, h http.Handler) map[string]any {
	t.Helper()
	w := serveReq(h, req{method: http.MethodGet, path: compatU, headers: map[string]string{"Origin": origin}})
	require.Equal(t, http.StatusOK, w.Code)
	assertSecurityHeaders(t, w.Header(), false)
	return jsonBody(t, w.Body.Bytes())
}

// TestCompatibilityRealtime: with a real minter that is not down, the
// answer is exactly the original service's, byte for byte.
func TestCompatibilityRealtime(t *testing.T) {
	r := newRig(t)
	w := serveReq(r.h, req{method: http.MethodGet, path: compatU})
	require.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, `{"success":true,"tier":"realtime","features":{"realtimeVoice":true,"chatCompletion":false,`+
		`"textToSpeech":false,"speechToText":false,"functionCalling":true},"limitations":[],"recommendations":[]}`,
		w.Body.String())
	w = serveReq(r.h, req{method: http.MethodHead, path: compatU})
	assert.Equal(t, http.StatusOK, w.Code)
	assert.Empty(t, w.Body.Bytes())
}

var noFeatures = map[string]any{"realtimeVoice": false, "chatCompletion": false, "textToSpeech": false,
	"speechToText": false, "functionCalling": false}

// TestCompatibilityDevMode: the dev minter's tokens reach no OpenAI: tier
// none, every feature false.
func TestCompatibilityDevMode(t *testing.T) {
	h, err := realtimeauth.New(realtimeauth.NewDevMinter(nil), realtimeauth.WithLogger(quietLogger()))
	require.NoError(t, err)
	m := compatibility(t, h)
	assert.Equal(t, "none", m["tier"])
	assert.Equal(t, true, m["success"])
	assert.Equal(t, noFeatures, m["features"])
	assert.Len(t, m["limitations"], 1)
	assert.Equal(t, []any{}, m["recommendations"])
}

// TestCompatibilityFollowsMints: the minter's state comes from the recent
// mints (three failures in a row: down), never from a call of its own: a
// thousand compatibility requests make no upstream call.
func TestCompatibilityFollowsMints(t *testing.T) {
	r := newRig(t, realtimeauth.WithLimits(realtimeauth.Limits{Sessions: realtimeauth.Rate{N: 100, Per: time.Minute}}), realtimeauth.WithAbuseGuard(nil))
	for range 1000 {
		serveReq(r.h, req{method: http.MethodGet, path: compatU})
	}
	assert.Zero(t, r.mint.Calls(), "compatibility never calls the upstream")
	assert.Equal(t, "realtime", compatibility(t, r.h)["tier"])

	r.mint.SetError(&realtimeauth.UpstreamError{StatusCode: 500})
	for i := range 3 {
		assert.Equal(t, "realtime", compatibility(t, r.h)["tier"], "not down after %d failures", i)
		serveReq(r.h, req{path: tokenURL})
	}
	m := compatibility(t, r.h)
	assert.Equal(t, "none", m["tier"], "down after three failures in a row")
	assert.Equal(t, noFeatures, m["features"])
	assert.Equal(t, 3, r.mint.Calls())

	r.mint.SetError(nil)
	issueToken(t, r.h, defaultRemote)
	assert.Equal(t, "realtime", compatibility(t, r.h)["tier"], "one good mint and it is back")
	assert.Equal(t, 4, r.mint.Calls())

	require.NoError(t, r.h.Close())
	assert.Equal(t, "none", compatibility(t, r.h)["tier"], "closed: no tokens to be had")
}

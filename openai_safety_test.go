package realtimeauth_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"regexp"
	"sync/atomic"
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/realtimeauthtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const safetyHeader = "OpenAI-Safety-Identifier"

// safetyIDs mints once per request and returns the OpenAI-Safety-Identifier
// each upstream call carried.
func safetyIDs(t *testing.T, m realtimeauth.Minter, u *upstream, reqs ...realtimeauth.MintRequest) []string {
	t.Helper()
	from := u.count()
	for _, r := range reqs {
		r.TTL = time.Minute
		_, err := m.Mint(context.Background(), r)
		require.NoError(t, err)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []string
	for _, r := range u.reqs[from:] {
		out = append(out, r.Header.Get(safetyHeader))
	}
	return out
}

// TestOpenAISafetyIdentifier: every client_secrets request carries a keyed
// hash of the subject, or of the session when anonymous; it is stable for a
// user, differs between users, is not the plain hash of the user ID, and
// follows the secret.
func TestOpenAISafetyIdentifier(t *testing.T) {
	u := newUpstream(t, okAnswer("ek_1", time.Now().Add(time.Minute)))
	m, err := realtimeauth.NewOpenAIMinter(fakeKey, realtimeauth.OpenAIConfig{BaseURL: u.srv.URL})
	require.NoError(t, err)
	ids := safetyIDs(t, m, u,
		realtimeauth.MintRequest{Subject: "alice", SessionID: "s1"},
		realtimeauth.MintRequest{Subject: "alice", SessionID: "s2"},
		realtimeauth.MintRequest{Subject: "bob", SessionID: "s1"},
		realtimeauth.MintRequest{SessionID: "s1"},
		realtimeauth.MintRequest{SessionID: "s1"},
		realtimeauth.MintRequest{SessionID: "s2"},
		realtimeauth.MintRequest{},
	)
	hexID := regexp.MustCompile(`^[0-9a-f]{32}$`)
	for _, id := range ids[:6] {
		assert.Regexp(t, hexID, id)
	}
	assert.Equal(t, ids[0], ids[1], "one subject, one identifier, whatever the session")
	assert.NotEqual(t, ids[0], ids[2], "two subjects, two identifiers")
	assert.Equal(t, ids[3], ids[4], "an anonymous session keeps its identifier")
	assert.NotEqual(t, ids[3], ids[5])
	assert.NotEqual(t, ids[3], ids[2], "a session ID and a subject never share an identifier")
	assert.Empty(t, ids[6], "nothing to identify: no header")
	for _, plain := range []string{"alice", "subject:alice"} {
		sum := sha256.Sum256([]byte(plain))
		assert.NotEqual(t, hex.EncodeToString(sum[:])[:32], ids[0], "not an unkeyed hash of the user ID")
	}

	// Another minter draws another secret; a shared secret gives the same
	// identifiers on every instance, computed as documented.
	m2, err := realtimeauth.NewOpenAIMinter(fakeKey, realtimeauth.OpenAIConfig{BaseURL: u.srv.URL})
	require.NoError(t, err)
	assert.NotEqual(t, ids[0], safetyIDs(t, m2, u, realtimeauth.MintRequest{Subject: "alice"})[0])
	secret := []byte("0123456789abcdef-shared-secret")
	var got []string
	for range 2 {
		mk, err := realtimeauth.NewOpenAIMinter(fakeKey, realtimeauth.OpenAIConfig{
			BaseURL:             u.srv.URL,
			SafetyIdentifierKey: secret,
		})
		require.NoError(t, err)
		got = append(got, safetyIDs(t, mk, u, realtimeauth.MintRequest{Subject: "alice"}, realtimeauth.MintRequest{SessionID: "s1"})...)
	}
	mac := func(in string) string {
		h := hmac.New(sha256.New, secret)
		h.Write([]byte(in))
		return hex.EncodeToString(h.Sum(nil))[:32]
	}
	assert.Equal(t, []string{mac("subject:alice"), mac("session:s1"), mac("subject:alice"), mac("session:s1")}, got)

	for _, short := range [][]byte{{1}, []byte("fifteen bytes!!")} {
		_, err = realtimeauth.NewOpenAIMinter(fakeKey, realtimeauth.OpenAIConfig{SafetyIdentifierKey: short})
		assert.ErrorContains(t, err, "OpenAIConfig.SafetyIdentifierKey")
	}
	// An empty one is none: a random secret, drawn per minter.
	_, err = realtimeauth.NewOpenAIMinter(fakeKey, realtimeauth.OpenAIConfig{SafetyIdentifierKey: []byte{}})
	assert.NoError(t, err)
}

// TestOpenAISafetyIdentifierThroughHandler: the handler's subject, or its
// session ID for an anonymous user, reaches the header on tokens, refreshes
// and retried attempts alike.
func TestOpenAISafetyIdentifierThroughHandler(t *testing.T) {
	var failOnce atomic.Bool
	failOnce.Store(true)
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if failOnce.CompareAndSwap(true, false) {
			jsonAnswer(500, `{"error":{"message":"try again"}}`)(w, r)
			return
		}
		okAnswer("ek_h", time.Now().Add(time.Minute))(w, r)
	})
	secret := []byte("handler-test-secret-0123456789")
	m, err := realtimeauth.NewOpenAIMinter(fakeKey, realtimeauth.OpenAIConfig{
		BaseURL:             u.srv.URL,
		SafetyIdentifierKey: secret,
		RetryBackoff:        time.Millisecond,
		MaxRetryBackoff:     time.Millisecond,
	})
	require.NoError(t, err)
	newHandler := func(opts ...realtimeauth.Option) *realtimeauth.Handler {
		clock := realtimeauthtest.NewClock(time.Now())
		h, err := realtimeauth.New(m, append([]realtimeauth.Option{realtimeauth.WithAllowedOrigins(origin),
			realtimeauth.WithLogger(quietLogger()), realtimeauth.WithLimits(realtimeauth.Limits{
				MaxRefreshes:       3,
				MinRefreshInterval: -1,
			}), realtimeauth.WithClock(clock.Now)}, opts...)...)
		require.NoError(t, err)
		t.Cleanup(func() { _ = h.Close() })
		return h
	}
	h := newHandler()
	mac := func(in string) string {
		hm := hmac.New(sha256.New, secret)
		hm.Write([]byte(in))
		return hex.EncodeToString(hm.Sum(nil))[:32]
	}

	w := serveReq(h, req{path: tokenURL})
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	sess := jsonBody(t, w.Body.Bytes())["sessionId"].(string)
	w = serveReq(h, req{path: refrURL, body: refreshBody(sess)})
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	w = serveReq(newHandler(realtimeauth.WithAuthenticator(bearerAuth)), req{path: tokenURL, headers: as("alice")})
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())

	u.mu.Lock()
	var got []string
	for _, r := range u.reqs {
		got = append(got, r.Header.Get(safetyHeader))
	}
	u.mu.Unlock()
	want := mac("session:" + sess)
	assert.Equal(t, []string{want, want, want, mac("subject:alice")}, got,
		"the failed attempt, its retry, the refresh, then an authenticated user")
}

package sideband_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/calls"
	"github.com/realtimeauth/realtimeauth/realtimeauthtest"
	"github.com/realtimeauth/realtimeauth/sideband"
)

const offer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"

// TestHandlerEndsCallsTheSidebandReports runs the relay with the Watcher
// against the fake upstream: a call the user ends upstream (the tab closed)
// leaves the registry, frees its place under the cap, and emits call_ended
// with the reason upstream; a call hung up by DELETE ends once.
func TestHandlerEndsCallsTheSidebandReports(t *testing.T) {
	f := newFixture(t)
	w, err := sideband.New()
	require.NoError(t, err)
	events := &realtimeauthtest.Events{}
	h, err := realtimeauth.New(f.minter, realtimeauth.WithCallWatcher(w), realtimeauth.WithEventHook(events.Hook),
		realtimeauth.WithLimits(realtimeauth.Limits{MaxCallsPerClient: 1}), realtimeauth.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	defer func() {
		require.NoError(t, h.Close())
		require.NoError(t, w.Close())
	}()
	post := func() *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/api/voice-agent/calls", strings.NewReader(offer))
		r.Header.Set("Content-Type", "application/sdp")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec
	}
	rec := post()
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	id := strings.TrimPrefix(rec.Header().Get("Location"), "/api/voice-agent/calls/")
	waitUntil(t, func() bool { return f.sb.Connects() == 1 }, "the handler opened no sideband")
	assert.Equal(t, http.StatusTooManyRequests, post().Code, "one live call per client")

	f.up.End(id) // the user closed the tab
	waitUntil(t, func() bool { return events.Count(realtimeauth.EventCallEnded) == 1 }, "no call_ended")
	assert.Equal(t, calls.EndUpstream, events.Named(realtimeauth.EventCallEnded)[0].Reason)
	assert.Equal(t, 0, h.Stats().ActiveCalls)

	rec = post()
	require.Equal(t, http.StatusCreated, rec.Code, "the ended call's place is free")
	id = strings.TrimPrefix(rec.Header().Get("Location"), "/api/voice-agent/calls/")
	waitUntil(t, func() bool { return f.sb.Connects() == 2 }, "no sideband for the second call")
	del := httptest.NewRequest(http.MethodDelete, "/api/voice-agent/calls/"+id, nil)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, del)
	require.Equal(t, http.StatusNoContent, rec.Code)
	ended := events.Named(realtimeauth.EventCallEnded)
	require.Len(t, ended, 2)
	assert.Equal(t, calls.EndClient, ended[1].Reason)
	assert.Equal(t, 2, events.Count(realtimeauth.EventCallEnded))
}

// Package sidebandtest serves a fake sideband WebSocket for
// realtimeauthtest.Upstream, so that tests can run the whole relay, the
// sideband included, without OpenAI.
package sidebandtest

import (
	"net/http"
	"sync/atomic"

	"github.com/coder/websocket"

	"github.com/realtimeauth/realtimeauth/realtimeauthtest"
)

// Handler is a fake sideband: it accepts the WebSocket of a live call of
// its Upstream (the Upstream answers 404 for the others before asking it),
// sends one event, and closes the connection normally when the call ends
// (hung up, or Upstream.End). Set it as the Upstream's Sideband.
type Handler struct {
	Upstream *realtimeauthtest.Upstream
	// Drop, while positive, makes the next connections drop at once
	// (without a close handshake), one per unit.
	Drop atomic.Int32

	connects atomic.Int32
}

// Connects returns how many sideband connections were accepted.
func (h *Handler) Connects() int { return int(h.connects.Load()) }

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	h.connects.Add(1)
	if h.Drop.Add(-1) >= 0 {
		_ = c.CloseNow()
		return
	}
	h.Drop.Store(0)
	ctx := r.Context()
	_ = c.Write(ctx, websocket.MessageText, []byte(`{"type":"session.created","event_id":"event_fake"}`))
	select {
	case <-h.Upstream.Ended(r.URL.Query().Get("call_id")):
		_ = c.Close(websocket.StatusNormalClosure, "call ended")
	case <-ctx.Done():
		_ = c.CloseNow()
	}
}

package calls

import (
	"context"
	"encoding/json"
	"net/http"
)

// Upstream places WebRTC calls for the relay and hangs them up. A
// realtimeauth.Minter that also implements Upstream (the OpenAI minter
// does) turns the relay on: the handler finds it by a type assertion on
// its Minter; with one that does not (the dev minter), the relay answers
// 501 relay_unavailable.
type Upstream interface {
	// Call sends the browser's SDP offer with the server's session
	// configuration upstream and returns the upstream's SDP answer and call
	// ID. Its errors are mapped as the Minter's Mint's are.
	Call(ctx context.Context, req Request) (Answer, error)
	// Hangup ends the call upstream. A call the upstream no longer knows
	// has ended already: that is not an error.
	Hangup(ctx context.Context, callID string) error
	// Sideband says how to open the call's sideband WebSocket, which stays
	// open as long as the call lasts (see Watcher).
	Sideband(callID string) Sideband
}

// Request is what the relay asks an Upstream for.
type Request struct {
	// SessionID, ClientIP and Subject are as in realtimeauth.MintRequest.
	SessionID string
	ClientIP  string
	Subject   string
	// Session is the realtime session configuration chosen by
	// realtimeauth.WithSessionConfig for this request, a JSON object, or
	// nil.
	Session json.RawMessage
	// Offer is the browser's SDP offer.
	Offer string
}

// Answer is the upstream's answer to a call.
type Answer struct {
	// ID is the upstream's call ID.
	ID string
	// SDP is the SDP answer for the browser.
	SDP string
}

// Sideband is where a call's sideband WebSocket is: its URL
// (wss://…/realtime?call_id=…) and the headers that authenticate it. The
// headers carry the API key: hand them to nothing that logs them.
type Sideband struct {
	CallID string
	URL    string
	Header http.Header
}

// Watcher watches live calls upstream, so that a call that ends by
// itself (the user closed the tab, the upstream's own limit) stops counting
// against its caps. The sideband module implements it over the call's
// sideband WebSocket; without one (realtimeauth's default), a call counts
// until its deadline or its DELETE.
type Watcher interface {
	// Watch starts watching the call and returns at once. It calls ended,
	// once, when it knows the call has ended upstream; never when it
	// cannot tell (it fails closed: the call keeps counting). Watching
	// stops when ctx ends, without calling ended.
	Watch(ctx context.Context, s Sideband, ended func())
}

package realtimeauth

import (
	"context"
	"encoding/json"
	"net/http"
)

// CallMinter is a Minter that also places WebRTC calls for the relay
// (POST {base}/calls) and hangs them up. The handler finds it by a type
// assertion on its Minter; with a Minter that is not one (DevMinter), the
// relay answers 501 relay_unavailable. OpenAIMinter is one.
type CallMinter interface {
	Minter
	// Call sends the browser's SDP offer with the server's session
	// configuration upstream and returns the upstream's SDP answer and call
	// ID. Its errors are mapped as Mint's are.
	Call(ctx context.Context, req CallRequest) (CallAnswer, error)
	// Hangup ends the call upstream. A call the upstream no longer knows
	// has ended already: that is not an error.
	Hangup(ctx context.Context, callID string) error
	// Sideband says how to open the call's sideband WebSocket, which stays
	// open as long as the call lasts (see CallWatcher).
	Sideband(callID string) Sideband
}

// CallRequest is what the relay asks a CallMinter for.
type CallRequest struct {
	// SessionID, ClientIP and Subject are as in MintRequest.
	SessionID string
	ClientIP  string
	Subject   string
	// Session is the realtime session configuration chosen by
	// WithSessionConfig for this request, a JSON object, or nil.
	Session json.RawMessage
	// Offer is the browser's SDP offer.
	Offer string
}

// CallAnswer is the upstream's answer to a call.
type CallAnswer struct {
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

// CallWatcher watches live calls upstream, so that a call that ends by
// itself (the user closed the tab, the upstream's own limit) stops counting
// against its caps. The sideband module implements it over the call's
// sideband WebSocket; without one (the default), a call counts until its
// deadline or its DELETE.
type CallWatcher interface {
	// Watch starts watching the call and returns at once. It calls ended,
	// once, when it knows the call has ended upstream; never when it
	// cannot tell (it fails closed: the call keeps counting). Watching
	// stops when ctx ends, without calling ended.
	Watch(ctx context.Context, s Sideband, ended func())
}

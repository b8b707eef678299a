package realtimeauthtest

import (
	"context"
	"fmt"
	"net/http"

	"github.com/realtimeauth/realtimeauth"
)

// The fake Minter is a realtimeauth.CallMinter too, so that the relay can
// be tested without an upstream: a call counts as a mint (Calls, SetError,
// Hold apply to it), answers AnswerSDP of the offer with the call ID
// "rtc_test_N", and its hang-ups are recorded.

var _ realtimeauth.CallMinter = (*Minter)(nil)

// Call implements realtimeauth.CallMinter.
func (m *Minter) Call(ctx context.Context, req realtimeauth.CallRequest) (realtimeauth.CallAnswer, error) {
	m.mu.Lock()
	m.calls++
	n := m.calls
	m.requests = append(m.requests, realtimeauth.MintRequest{SessionID: req.SessionID, ClientIP: req.ClientIP, Subject: req.Subject, Session: req.Session})
	err, gate := m.err, m.gate
	m.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return realtimeauth.CallAnswer{}, ctx.Err()
		}
	}
	if err != nil {
		return realtimeauth.CallAnswer{}, err
	}
	return realtimeauth.CallAnswer{ID: fmt.Sprintf("rtc_test_%d", n), SDP: AnswerSDP(req.Offer)}, nil
}

// Hangup implements realtimeauth.CallMinter; it records id.
func (m *Minter) Hangup(ctx context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.hangups = append(m.hangups, id)
	return ctx.Err()
}

// Sideband implements realtimeauth.CallMinter, with an address nothing
// answers.
func (m *Minter) Sideband(id string) realtimeauth.Sideband {
	return realtimeauth.Sideband{CallID: id, URL: "ws://127.0.0.1:9/v1/realtime?call_id=" + id, Header: http.Header{}}
}

// Hangups returns the call IDs hung up so far, in order.
func (m *Minter) Hangups() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.hangups...)
}

package realtimeauthtest

import (
	"context"
	"fmt"
	"net/http"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/calls"
)

// The fake Minter is a calls.Upstream too, so that the relay can
// be tested without an upstream: a call counts as a mint (Calls, SetError,
// Hold apply to it), answers AnswerSDP of the offer with the call ID
// "rtc_test_N", and its hang-ups are recorded.

var _ calls.Upstream = (*Minter)(nil)

// Call implements calls.Upstream.
func (m *Minter) Call(ctx context.Context, req calls.Request) (calls.Answer, error) {
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
			return calls.Answer{}, ctx.Err()
		}
	}
	if err != nil {
		return calls.Answer{}, err
	}
	return calls.Answer{ID: fmt.Sprintf("rtc_test_%d", n), SDP: AnswerSDP(req.Offer)}, nil
}

// Hangup implements calls.Upstream; it records id.
func (m *Minter) Hangup(ctx context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.hangups = append(m.hangups, id)
	return ctx.Err()
}

// Sideband implements calls.Upstream, with an address nothing
// answers.
func (m *Minter) Sideband(id string) calls.Sideband {
	return calls.Sideband{CallID: id, URL: "ws://127.0.0.1:9/v1/realtime?call_id=" + id, Header: http.Header{}}
}

// Hangups returns the call IDs hung up so far, in order.
func (m *Minter) Hangups() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.hangups...)
}

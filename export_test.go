package realtimeauth

import (
	"net/http"
	"net/netip"
	"time"
)

// ErrorRow is a row of the error table, for the black-box tests.
type ErrorRow struct {
	Status   int
	Code     Code
	Msg      string
	Event    EventName
	Severity Severity
	Strike   bool
}

// refusalNames names the rows of the error table for the tests.
var refusalNames = [numRefusals]string{
	refBadJSON: "bad_json", refBadRefreshBody: "bad_refresh_body", refMissingSessionID: "missing_session_id",
	refBadSessionID: "bad_session_id", refBodyRead: "body_read", refTooLarge: "too_large", refMediaType: "media_type",
	refSessionConfig: "session_config", refForbidden: "forbidden", refInternal: "internal", refOrigin: "origin",
	refUnauthorized: "unauthorized", refBlocked: "blocked", refSessionMismatch: "session_mismatch",
	refSessionRevoked: "session_revoked", refRefreshLimit: "refresh_limit", refSessionNotFound: "session_not_found",
	refNotFound: "not_found", refMethod: "method", refRateLimited: "rate_limited", refRefreshTooSoon: "refresh_too_soon",
	refTooManySessions: "too_many_sessions", refStoreFull: "store_full", refUpstream: "upstream",
	refUpstreamLimited: "upstream_limited", refUpstreamBusy: "upstream_busy", refUpstreamTimeout: "upstream_timeout",
	refStoreUnavailable: "store_unavailable", refUnavailable: "unavailable", refClientGone: "client_gone",
	refTooManyCalls: "too_many_calls", refCallMismatch: "call_mismatch", refCallNotFound: "call_not_found",
	refRelayUnavailable: "relay_unavailable", refBadOffer: "bad_offer", refOfferMediaType: "offer_media_type",
	refMethodCall: "method_call",
}

// ErrorTable returns the error table by row name.
func ErrorTable() map[string]ErrorRow {
	out := make(map[string]ErrorRow, numRefusals)
	for i, e := range errorTable {
		name := refusalNames[i]
		if name == "" {
			panic("export_test.go: a row of the error table has no name")
		}
		out[name] = ErrorRow{e.status, e.code, e.msg, e.event, e.sev, e.strike}
	}
	return out
}

// MemoryLen returns how many keys an in-memory limiter or abuse guard
// tracks, or how many sessions a memory store holds (revoked ones included,
// expired ones not yet dropped).
func MemoryLen(x any) int { return x.(interface{ Len() int }).Len() }

// NewMemoryLimiterCap is NewMemoryLimiter with a cap of about maxKeys
// tracked keys instead of 1,000,000.
func NewMemoryLimiterCap(limit int, window time.Duration, maxKeys int) (Limiter, error) {
	l, err := newMemoryLimiter(limit, window, maxKeys)
	if err != nil {
		return nil, err
	}
	return l, nil
}

// NewMemoryAbuseGuardCap is NewMemoryAbuseGuard with a cap of about
// maxKeys tracked keys instead of 1,000,000.
// It panics on bad arguments: the tests give it constants.
func NewMemoryAbuseGuardCap(strikes int, window, blockFor time.Duration, maxKeys int) AbuseGuard {
	g, err := newMemoryAbuseGuard(strikes, window, blockFor, maxKeys)
	if err != nil {
		panic(err)
	}
	return g
}

// ClientIP returns the address h attributes r to, following
// WithTrustedProxies.
func (h *Handler) ClientIP(r *http.Request) netip.Addr {
	a, _ := h.ips.clientAddr(r)
	return a
}

// MinterEndpoint is the URL NewOpenAIMinter's m posts to.
func MinterEndpoint(m Minter) string { return m.(*openAIMinter).endpoint }

// MinterModel is the model (or Azure deployment) NewOpenAIMinter's m mints
// for.
func MinterModel(m Minter) string { return m.(*openAIMinter).model }

// NewUpstreamTransport is the transport of the minter's default client.
func NewUpstreamTransport() *http.Transport { return newUpstreamTransport() }

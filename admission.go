package realtimeauth

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"time"
)

// kind is what a request asks for: it chooses the body's media type and
// parser, the store operation (open a session, or refresh one) and the
// event of success. Token and refresh requests are the kinds today; a call
// relay is another kind, which opens a session from an SDP body: it runs
// admit, then places the call instead of minting (undoing with h.undo if
// that fails).
type kind struct {
	mediaType string // of a non-empty body
	parse     func(k *request) (refusal, bool)
	open      bool // Open a session; otherwise Refresh k.sessionID
	issued    EventName
	call      bool // an SDP body, and a call slot reserved before Open (calls_relay.go)
}

var (
	kindToken   = &kind{mediaType: "application/json", parse: parseTokenBody, open: true, issued: EventTokenIssued}
	kindRefresh = &kind{mediaType: "application/json", parse: parseRefreshBody, issued: EventTokenRefreshed}
)

// admit runs the steps every request that costs a mint goes through, in
// this order, each decided once:
//
//  1. the handler is open (Close);
//  2. the client is not blocked (read the clock);
//  3. the Origin is allowed;
//  4. the authenticator knows the subject;
//  5. the body is well formed, and WithSessionConfig accepts it;
//  6. read the clock: k.now decides every step below; the upstream budget
//     has a mint left (a look that takes nothing: while it is empty, a
//     request costs no store operation, nothing is charged, and the
//     client is told when to come back);
//  7. the store opens or refreshes the session, checking the session's own
//     conditions, then the allowances, then the caps, atomically;
//  8. the upstream budget has a mint left (or step 7 is undone), decided
//     with the clock read again: step 7 may have been a round trip.
//
// It returns true with k.session opened or refreshed, for the caller to
// mint (undoing step 7 with h.undo if that fails), or false when it has
// answered the request.
func (h *Handler) admit(k *request, kd *kind) bool {
	k.start = h.now()
	k.now = k.start
	if h.closed.Load() {
		h.refuse(k, refUnavailable, 0)
		return false
	}
	if !h.checkBlocked(k) || !h.checkOrigin(k) || !h.authenticate(k) {
		return false
	}
	read := func(k *request) (refusal, bool) { return h.readBody(k, kd.mediaType) }
	if kd.call {
		read = h.readOffer
	}
	if ref, ok := read(k); !ok {
		return h.refuseNow(k, ref)
	}
	if ref, ok := kd.parse(k); !ok {
		return h.refuseNow(k, ref)
	}
	if !h.chooseConfig(k) {
		return false
	}
	k.now = h.now()
	if !h.budgetLeft(k) {
		return false
	}
	if kd.call && !h.reserveCall(k) {
		return false
	}
	var ok bool
	if kd.open {
		ok = h.open(k)
	} else {
		ok = h.refresh(k)
	}
	ok = ok && h.takeBudget(k, kd)
	if !ok && kd.call {
		h.releaseCall(k)
	}
	return ok
}

// refuseNow refuses at the time it decides, for the steps before the body's
// clock read.
func (h *Handler) refuseNow(k *request, ref refusal, extra ...slog.Attr) bool {
	k.now = h.now()
	h.refuse(k, ref, 0, extra...)
	return false
}

// refuse answers row ref of the error table: a strike and an event when the
// row says so, then the error answer.
func (h *Handler) refuse(k *request, ref refusal, retry time.Duration, extra ...slog.Attr) {
	e := errorTable[ref]
	if e.strike {
		h.strike(k)
	}
	if e.event != "" {
		ev := h.newEvent(k, e.event, e.sev)
		ev.Status, ev.Code, ev.RetryAfter, ev.Detail = e.status, e.code, retry, e.msg
		if e.event == EventUpstreamError {
			ev.Latency = k.latency // 0 for a hang-up, which is no mint
		}
		h.emit(k, ev, extra...)
	}
	writeError(k.w, k.client.tls, e, retry)
	k.status = e.status
}

func (h *Handler) checkBlocked(k *request) bool {
	if h.guard == nil {
		return true
	}
	d, err := h.guard.Blocked(k.r.Context(), k.client.key, k.now)
	switch {
	case err != nil:
		h.refuse(k, refStoreUnavailable, 0, attrErr(err))
		return false
	case d > 0:
		h.refuse(k, refBlocked, d)
		return false
	}
	return true
}

// strike records a strike against the client, and emits client_blocked
// when it starts a block.
func (h *Handler) strike(k *request) {
	if h.guard == nil {
		return
	}
	d, started, err := h.guard.Strike(k.r.Context(), k.client.key, k.now)
	if err != nil {
		h.logf(k, slog.LevelWarn, "realtimeauth: abuse guard failed", attrErr(err))
		return
	}
	if started {
		ev := h.newEvent(k, EventClientBlocked, SeverityHigh)
		e := errorTable[refBlocked]
		ev.Status, ev.Code, ev.RetryAfter, ev.Detail = e.status, e.code, d, "too many strikes"
		h.emit(k, ev)
	}
}

// checkOrigin lets rs/cors write the CORS headers (Vary: Origin on every
// answer, the rest for an allowed origin) and refuses a foreign Origin.
func (h *Handler) checkOrigin(k *request) bool {
	h.corsFor(k).HandlerFunc(k.w, k.r)
	if o := k.r.Header.Get("Origin"); o != "" && !h.origins.allowed(o) {
		h.refuse(k, refOrigin, 0)
		return false
	}
	return true
}

func (h *Handler) authenticate(k *request) bool {
	if h.cfg.authenticator == nil {
		return true
	}
	sub, err := h.cfg.authenticator(k.r)
	if err != nil || sub == "" {
		return h.refuseNow(k, refUnauthorized)
	}
	k.subject = sub
	return true
}

// chooseConfig asks WithSessionConfig's hook, which may read the body again.
func (h *Handler) chooseConfig(k *request) bool {
	if h.cfg.sessionConfig == nil {
		return true
	}
	k.r.Body = io.NopCloser(bytes.NewReader(k.body))
	cfg, err := h.cfg.sessionConfig(k.r, k.subject)
	switch {
	case errors.Is(err, ErrForbidden):
		return h.refuseNow(k, refForbidden, attrErr(err))
	case err != nil:
		return h.refuseNow(k, refSessionConfig, attrErr(err))
	case cfg != nil && !isJSONObject(cfg):
		return h.refuseNow(k, refInternal, slog.String("error", "WithSessionConfig returned something other than a JSON object"))
	}
	k.config = cfg
	return true
}

// open opens k's new session (step 7 for a token or a call).
func (h *Handler) open(k *request) bool {
	charged := h.allowances(k, true)
	s, evicted, err := h.store.Open(k.r.Context(), OpenRequest{
		Now:           k.now,
		ExpiresAt:     k.now.Add(h.cfg.lim.SessionTTL),
		ClientIP:      k.client.ip,
		Client:        k.client.key,
		Subject:       k.subject,
		Allowances:    charged,
		MaxPerClient:  h.cfg.lim.MaxSessionsPerClient,
		MaxPerSubject: h.cfg.lim.MaxSessionsPerSubject,
		MaxSessions:   h.cfg.lim.MaxSessions,
	})
	if !h.storeAnswered(k, err) {
		return false
	}
	k.session, k.sessionID = s, s.ID
	k.charged, k.chargedAt = charged, k.now
	k.evicted = evicted
	return true
}

// announceEvicted emits session_evicted for the sessions k's Open evicted,
// once the eviction stands: the mint succeeded, or undo could not restore
// them.
func (h *Handler) announceEvicted(k *request) {
	for _, e := range k.evicted {
		ev := h.newEvent(k, EventSessionEvicted, SeverityLow)
		ev.ClientIP, ev.Subject, ev.SessionID = e.ClientIP, e.Subject, e.ID
		ev.Detail = "a newer session of its client, or of a full store, took its place"
		h.emit(k, ev)
	}
	k.evicted = nil
}

// refresh refreshes k.sessionID (step 7 for a refresh).
func (h *Handler) refresh(k *request) bool {
	charged := h.allowances(k, false)
	s, err := h.store.Refresh(k.r.Context(), RefreshRequest{
		Now:          k.now,
		ID:           k.sessionID,
		ClientIP:     k.client.ip,
		Subject:      k.subject,
		MaxRefreshes: h.cfg.lim.MaxRefreshes,
		MinInterval:  h.cfg.lim.MinRefreshInterval,
		Allowances:   charged,
	})
	if errors.Is(err, ErrRefreshTooSoon) {
		h.m.storeResult(k.now, true)
		h.refuse(k, refRefreshTooSoon, max(s.LastIssuedAt.Add(h.cfg.lim.MinRefreshInterval).Sub(k.now), time.Millisecond))
		return false
	}
	if !h.storeAnswered(k, err) {
		return false
	}
	k.session = s
	k.charged, k.chargedAt = charged, k.now
	return true
}

// storeErrors maps the store's refusals to their rows.
var storeErrors = []struct {
	err error
	ref refusal
}{
	{ErrSessionNotFound, refSessionNotFound},
	{ErrSessionRevoked, refSessionRevoked},
	{ErrSessionMismatch, refSessionMismatch},
	{ErrRefreshLimit, refRefreshLimit},
	{ErrTooManySessions, refTooManySessions},
	{ErrStoreFull, refStoreFull},
}

// storeAnswered records the store's health and answers its refusal; it
// reports whether the operation succeeded.
func (h *Handler) storeAnswered(k *request, err error) bool {
	if err == nil {
		h.m.storeResult(k.now, true)
		return true
	}
	if le, ok := errors.AsType[*LimitError](err); ok {
		h.m.storeResult(k.now, true)
		h.refuse(k, refRateLimited, max(le.RetryAfter, time.Millisecond))
		return false
	}
	for _, se := range storeErrors {
		if errors.Is(err, se.err) {
			h.m.storeResult(k.now, true)
			h.refuse(k, se.ref, 0)
			return false
		}
	}
	h.m.storeResult(k.now, false)
	h.refuse(k, refStoreUnavailable, 0, attrErr(err))
	return false
}

// allowances lists what the request is charged against (see Limits: Sessions,
// Mints, PrefixShare, SubjectMints): every mint counts
// against the client's (and its /48's) mint allowance and the subject's;
// a new session also against the client's (and its /48's) new sessions.
func (h *Handler) allowances(k *request, open bool) []Allowance {
	c := &h.cfg
	a := k.allowances[:0]
	if open {
		a = append(a, Allowance{"n:" + k.client.key, c.lim.Sessions.N, c.lim.Sessions.Per})
	}
	a = append(a, Allowance{"m:" + k.client.key, c.lim.Mints.N, c.lim.Mints.Per})
	if k.client.prefix != "" {
		if open {
			a = append(a, Allowance{"np:" + k.client.prefix, c.prefixRateLimit, c.lim.Sessions.Per})
		}
		a = append(a, Allowance{"mp:" + k.client.prefix, c.prefixMintLimit, c.lim.Mints.Per})
	}
	if k.subject != "" && c.lim.SubjectMints.N > 0 {
		a = append(a, Allowance{"s:" + k.subject, c.lim.SubjectMints.N, c.lim.SubjectMints.Per})
	}
	return a
}

// budgetLeft is step 6's look at the upstream budget: an empty budget is
// answered upstream_busy before the store is asked, so that a flood while
// it is empty neither costs a store operation (and its undo and refund)
// per request nor charges anyone's allowances.
func (h *Handler) budgetLeft(k *request) bool {
	if h.upstream == nil {
		return true
	}
	ok, wait := h.upstream.left(k.now)
	if !ok {
		h.refuse(k, refUpstreamBusy, max(wait, time.Millisecond))
	}
	return ok
}

// takeBudget takes one mint from the upstream budget (step 8), only now
// that the free checks have passed, with the clock read now: the store
// operation before it may have been a round trip, and a budget decided
// with k.now would take mints from the past (see upstreamBudget).
func (h *Handler) takeBudget(k *request, kd *kind) bool {
	if h.upstream == nil {
		return true
	}
	ok, wait := h.upstream.take(h.now())
	if ok {
		return true
	}
	h.undo(k, kd, true)
	h.refuse(k, refUpstreamBusy, max(wait, time.Millisecond))
	return false
}

// undo takes back step 7 when no token came of it: the new session is
// deleted and the sessions its Open evicted restored (SessionStore.Restore:
// a failed mint costs no one a live session), the refresh given back, and,
// when refund is set, the
// allowances it charged are refunded (a reservation that is not used is
// given back: a client refused upstream_busy, or whose mint failed, is not
// charged for it, and so not rate limited and struck for retrying). Its
// callers refund unless the upstream may have done the work: a client that
// went away during the mint got no token, but its mint may have reached
// the upstream, and a refund would let a client that closes every request
// mid-mint spend the upstream budget without ever being charged.
func (h *Handler) undo(k *request, kd *kind, refund bool) {
	ctx := context.WithoutCancel(k.r.Context())
	var err error
	if kd.open {
		err = h.store.Delete(ctx, k.session.ID)
	} else {
		err = h.store.GiveBack(ctx, k.session.ID, k.now, k.now.Add(-h.cfg.lim.MinRefreshInterval))
	}
	if err != nil {
		h.logf(k, slog.LevelWarn, "realtimeauth: could not undo a session operation whose mint failed", attrErr(err))
	}
	if len(k.evicted) > 0 {
		if err := h.store.Restore(ctx, k.evicted, h.now()); err != nil {
			h.logf(k, slog.LevelWarn, "realtimeauth: could not restore the sessions evicted for a failed mint", attrErr(err))
			h.announceEvicted(k)
		}
		k.evicted = nil
	}
	if !refund || len(k.charged) == 0 {
		return
	}
	err = h.store.Refund(ctx, RefundRequest{Client: k.client.key, Subject: k.subject, Allowances: k.charged, ChargedAt: k.chargedAt})
	if err != nil {
		h.logf(k, slog.LevelWarn, "realtimeauth: could not refund the allowances of a failed mint", attrErr(err))
	}
}

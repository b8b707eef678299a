package realtimeauth

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rs/cors"

	"github.com/realtimeauth/realtimeauth/calls"
)

// This file is the relay: POST {base}/calls places a WebRTC call upstream
// with the browser's SDP offer and the server's session, so that no key
// ever reaches the browser; DELETE {base}/calls/{id} hangs it up. The call
// registry and the background work (deadlines, revocations, the sideband)
// are in calls_control.go.

// callConfig is the calls' part of the handler's configuration.
// Its limits are in Limits.
type callConfig struct {
	registry calls.Registry
	watcher  calls.Watcher
	after    func(d time.Duration, f func()) (stop func() bool)
}

// WithCallRegistry sets where the live calls are recorded. Default:
// calls.NewMemoryRegistry(0), which serves one process; use a shared one
// (redisstore.NewCallRegistry) behind a load balancer, so that the caps
// hold across instances and a call whose instance went away is still hung
// up at its deadline.
func WithCallRegistry(r calls.Registry) Option {
	return func(c *config) { c.calls.registry = r }
}

// WithCallWatcher sets what tells the handler that a call has ended
// upstream (the user closed the tab), so that it stops counting within
// seconds: the sideband module's Watcher. Default none: a call counts until
// its deadline (Limits.MaxCallDuration), its DELETE, or OpenAI's 60-minute
// limit.
func WithCallWatcher(w calls.Watcher) Option {
	return func(c *config) { c.calls.watcher = w }
}

// WithTimer sets how the handler schedules its background work (the
// deadline sweep), for tests: realtimeauthtest.TimerClock's AfterFunc,
// with WithClock reading the same clock. Default time.AfterFunc.
func WithTimer(after func(d time.Duration, f func()) (stop func() bool)) Option {
	return func(c *config) { c.calls.after = after }
}

func (c *config) resolveCalls(bad func(string, ...any)) {
	cc := &c.calls
	if cc.registry == nil {
		cc.registry, _ = calls.NewMemoryRegistry(0)
	}
	if cc.after == nil {
		cc.after = func(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }
	}
}

// callCORS is the calls' CORS policy: the token endpoints' plus DELETE,
// the headers the OpenAI Agents SDK's WebRTC transport sends, and Location
// exposed so that a page can read the call ID.
func callCORS(origins *originMatcher, c *config) *cors.Cors {
	headers := append([]string{"Authorization", "Content-Type", "X-OpenAI-Agents-SDK"}, c.corsHeaders...)
	return cors.New(cors.Options{
		AllowOriginFunc:  origins.allowed,
		AllowedMethods:   []string{http.MethodPost, http.MethodDelete},
		AllowedHeaders:   headers,
		ExposedHeaders:   []string{"Location"},
		AllowCredentials: c.allowCredentials,
		MaxAge:           600,
	})
}

func (h *Handler) corsFor(k *request) *cors.Cors {
	if k.cors != nil {
		return k.cors
	}
	return h.cors
}

var (
	kindCall     = &kind{mediaType: "application/sdp", parse: parseOffer, open: true, issued: EventCallStarted, call: true}
	hdrSDP       = []string{"application/sdp"}
	hdrAllowCall = []string{"OPTIONS, POST"}
	hdrAllowHang = []string{"OPTIONS, DELETE"}
)

// serveCalls routes POST {base}/calls and DELETE {base}/calls/{id}.
func (h *Handler) serveCalls(k *request, id string) {
	k.cors = h.calls.cors
	allow, method := hdrAllowCall, http.MethodPost
	if id != "" {
		allow, method = hdrAllowHang, http.MethodDelete
	}
	switch k.r.Method {
	case http.MethodOptions:
		if k.r.Header.Get("Origin") == "" || k.r.Header.Get("Access-Control-Request-Method") == "" {
			hd := k.w.Header()
			hd["Allow"] = allow
			hd["Cache-Control"] = hdrNoStore
			k.w.WriteHeader(http.StatusNoContent)
			return
		}
		h.preflight(k)
		return
	case method:
	default:
		k.w.Header()["Allow"] = allow
		writeError(k.w, k.client.tls, errorTable[refMethodCall], 0)
		return
	}
	if id == "" {
		h.relay(k)
	} else {
		h.hangUp(k, id)
	}
	h.m.request(k.start, k.status, h.now().Sub(k.start), false)
}

// readOffer reads a call's body: an SDP offer within Limits.MaxBodyBytes. A
// Minter that cannot place calls (no calls.Upstream) answers 501 here, after the origin and
// the authentication, so that a page can explain it.
func (h *Handler) readOffer(k *request) (refusal, bool) {
	if _, ok := h.minter.(calls.Upstream); !ok {
		return refRelayUnavailable, false
	}
	ref, ok := h.readBody(k, "application/sdp")
	if ref == refMediaType {
		ref = refOfferMediaType
	}
	return ref, ok
}

// parseOffer checks that the body looks like an SDP offer: "v=0" first,
// a media section, UTF-8 without NUL. The upstream judges the rest.
func parseOffer(k *request) (refusal, bool) {
	s := string(k.body)
	if !strings.HasPrefix(s, "v=0") || !strings.Contains(s, "\nm=") || !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
		return refBadOffer, false
	}
	return 0, true
}

// reserveCall holds a call slot for k (step 7 of admit, before Open), so
// that a call over a cap costs nothing and reaches no upstream.
func (h *Handler) reserveCall(k *request) bool {
	slot, err := h.calls.reg.Reserve(k.r.Context(), calls.Reservation{
		Now:           k.now,
		HoldUntil:     k.now.Add(h.calls.hold),
		ClientIP:      k.client.ip,
		Client:        k.client.key,
		Subject:       k.subject,
		Prefix:        k.client.prefix,
		MaxPerClient:  h.cfg.lim.MaxCallsPerClient,
		MaxPerPrefix:  h.cfg.lim.MaxCallsPerClient * h.cfg.lim.PrefixShare,
		MaxPerSubject: h.cfg.lim.MaxCallsPerSubject,
	})
	switch {
	case errors.Is(err, calls.ErrTooMany):
		h.refuse(k, refTooManyCalls, 0)
		return false
	case errors.Is(err, calls.ErrFull):
		h.refuse(k, refStoreFull, 0)
		return false
	case err != nil:
		h.refuse(k, refStoreUnavailable, 0, attrErr(err))
		return false
	}
	k.callSlot = slot
	return true
}

// releaseCall frees k's slot when no call came of it.
func (h *Handler) releaseCall(k *request) {
	if k.callSlot == "" {
		return
	}
	if err := h.calls.reg.Release(context.WithoutCancel(k.r.Context()), k.callSlot); err != nil {
		h.logf(k, slog.LevelWarn, "realtimeauth: could not release a call slot", attrErr(err))
	}
	k.callSlot = ""
}

// relay answers POST {base}/calls: admission as for a token (one call costs
// one mint), the call upstream, then 201 with the SDP answer and Location.
func (h *Handler) relay(k *request) {
	if !h.admit(k, kindCall) {
		return
	}
	cm := h.minter.(calls.Upstream) // readOffer checked it
	ctx, cancel := context.WithTimeout(k.r.Context(), h.cfg.lim.UpstreamTimeout)
	defer cancel()
	ans, err := cm.Call(ctx, calls.Request{
		SessionID: k.sessionID,
		ClientIP:  k.client.ip,
		Subject:   k.subject,
		Session:   k.config,
		Offer:     string(k.body),
	})
	done := h.now()
	k.latency = done.Sub(k.now)
	if err == nil && (!callID.MatchString(ans.ID) || ans.SDP == "") {
		err = &UpstreamError{Message: "the minter returned a call without a usable ID or answer"}
	}
	if err != nil {
		h.undo(k, kindCall, k.r.Context().Err() == nil)
		h.releaseCall(k)
		k.now = done
		h.refuseUpstream(k, err)
		return
	}
	h.m.mint(done, k.latency, true)
	k.now = done
	c, err := h.calls.reg.Bind(context.WithoutCancel(k.r.Context()), calls.Start{
		Slot:      k.callSlot,
		ID:        ans.ID,
		SessionID: k.sessionID,
		StartedAt: done,
		Deadline:  h.calls.deadline(done),
		ExpiresAt: done.Add(maxCallDuration + time.Minute),
	})
	if err != nil {
		// A call nobody may own: hang it up rather than leave it running.
		h.calls.hangupOrphan(ans.ID)
		h.undo(k, kindCall, false) // the call was placed: its mint is spent
		h.releaseCall(k)
		h.refuse(k, refStoreUnavailable, 0, attrErr(err))
		return
	}
	h.announceEvicted(k)
	h.calls.started(c)
	hd := k.w.Header()
	setSecurityHeaders(hd, k.client.tls)
	hd["Content-Type"] = hdrSDP
	hd["Location"] = []string{h.base + "/calls/" + c.ID}
	k.w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(k.w, ans.SDP)
	k.status = http.StatusCreated
	ev := h.newEvent(k, EventCallStarted, SeverityInfo)
	ev.CallID, ev.Latency = c.ID, k.latency
	h.emit(k, ev)
}

// hangUp answers DELETE {base}/calls/{id}: the client that made the call
// (same client IP and subject) hangs it up.
func (h *Handler) hangUp(k *request, id string) {
	k.start = h.now()
	k.now = k.start
	if h.closed.Load() {
		h.refuse(k, refUnavailable, 0)
		return
	}
	if !h.checkBlocked(k) || !h.checkOrigin(k) || !h.authenticate(k) {
		return
	}
	if _, ok := h.minter.(calls.Upstream); !ok {
		h.refuseNow(k, refRelayUnavailable)
		return
	}
	k.now = h.now()
	if !callID.MatchString(id) {
		h.refuse(k, refCallNotFound, 0)
		return
	}
	c, err := h.calls.reg.Get(k.r.Context(), id, k.now)
	switch {
	case errors.Is(err, calls.ErrNotFound):
		h.refuse(k, refCallNotFound, 0)
		return
	case err != nil:
		h.refuse(k, refStoreUnavailable, 0, attrErr(err))
		return
	}
	k.sessionID = c.SessionID
	if c.ClientIP != k.client.ip || c.Subject != k.subject {
		h.refuse(k, refCallMismatch, 0)
		return
	}
	if err := h.calls.end(k.r.Context(), c, calls.EndClient); err != nil {
		// The call goes on, and keeps counting: the client may try again.
		k.now = h.now()
		ref := refUpstream
		if isDeadline(err) {
			ref = refUpstreamTimeout
		}
		h.refuse(k, ref, 0, attrErr(err))
		return
	}
	hd := k.w.Header()
	setSecurityHeaders(hd, k.client.tls)
	delete(hd, "Content-Type")
	k.w.WriteHeader(http.StatusNoContent)
	k.status = http.StatusNoContent
}

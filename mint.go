package realtimeauth

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"
)

// mint asks the Minter for k's token (step 9 of admit). On failure it
// undoes the store operation and answers; it returns the token and the time
// it arrived.
func (h *Handler) mint(k *request, kd *kind) (Token, time.Time, bool) {
	parent := k.r.Context()
	// The minter's own log lines (the OpenAI minter's retries) name the request.
	ctx := context.WithValue(parent, requestIDKey{}, k.id)
	if h.deadline(h.minter) {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.cfg.lim.UpstreamTimeout)
		defer cancel()
	}
	tok, err := h.minter.Mint(ctx, MintRequest{
		SessionID: k.sessionID,
		ClientIP:  k.client.ip,
		Subject:   k.subject,
		TTL:       h.cfg.lim.TokenTTL,
		Session:   k.config,
	})
	done := h.now()
	k.latency = done.Sub(k.now)
	if err == nil && (tok.Value == "" || !tok.ExpiresAt.After(done)) {
		err = &UpstreamError{Message: "the minter returned an empty or already expired token"}
	}
	if err == nil {
		h.m.mint(done, k.latency, true)
		return tok, done, true
	}
	h.undo(k, kd, k.r.Context().Err() == nil)
	k.now = done
	h.refuseUpstream(k, err)
	return Token{}, done, false
}

// refuseUpstream answers a failed mint or relayed call, which took
// k.latency, by the error table: the client's own departure, a timeout, the
// upstream's 429, anything else.
func (h *Handler) refuseUpstream(k *request, err error) {
	if k.r.Context().Err() != nil {
		// The client went away; that says nothing about the upstream.
		h.refuse(k, refClientGone, 0)
		return
	}
	h.m.mint(k.now, k.latency, false)
	ref, retry := refUpstream, time.Duration(0)
	ue, _ := errors.AsType[*UpstreamError](err)
	switch {
	case isDeadline(err):
		ref = refUpstreamTimeout
	case ue != nil && ue.StatusCode == http.StatusTooManyRequests:
		ref, retry = refUpstreamLimited, min(max(ue.RetryAfter, time.Second), maxUpstreamRetryAfter)
	}
	h.refuse(k, ref, retry, mintFailure(err, ue, k.latency)...)
}

// maxUpstreamRetryAfter caps the Retry-After passed on from the upstream's
// 429: an upstream (or a proxy in front of it) asking for days would
// otherwise tell every client to stay away that long.
const maxUpstreamRetryAfter = time.Minute

// requestIDKey carries the request's ID in the context given to the Minter.
type requestIDKey struct{}

// deadline reports whether m needs Limits.UpstreamTimeout's deadline: every
// Minter does but one that says it mints in-process (see Minter).
func (h *Handler) deadline(m Minter) bool {
	l, ok := m.(interface{ Local() bool })
	return !ok || !l.Local()
}

// mintFailure is what the log says about a failed mint, beside the event.
func mintFailure(err error, ue *UpstreamError, latency time.Duration) []slog.Attr {
	attrs := []slog.Attr{slog.Float64("latency", latency.Seconds())}
	if ue == nil {
		return append(attrs, attrErr(err))
	}
	attrs = append(attrs, slog.Int("upstream_status", ue.StatusCode), slog.String("upstream_request_id", ue.RequestID),
		slog.Int("attempts", ue.Attempts), slog.String("upstream_message", ue.Message))
	if ue.Err != nil {
		attrs = append(attrs, slog.String("cause", ue.Err.Error()))
	}
	return attrs
}

// isDeadline reports whether err is a timeout of the upstream call.
func isDeadline(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

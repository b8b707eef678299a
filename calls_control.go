package realtimeauth

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/rs/cors"

	"github.com/realtimeauth/realtimeauth/calls"
)

// Timing of the background work.
const (
	// callTick is how often the deadline sweep asks the registry for due
	// calls: a call is hung up within callTick (plus the hang-up's own
	// time) of its deadline.
	callTick = 250 * time.Millisecond
	// claimBatch is how many due calls one sweep claims (and hangs up
	// side by side); a full batch runs the next sweep at once.
	claimBatch = 32
)

// callControl is the handler's part that outlives a request: it hangs up
// calls at their deadline, on revocation and on DELETE, and ends the calls
// its calls.Watcher reports over. Its only goroutines are the sweep (while
// Limits.MaxCallDuration is set) and the watcher's.
type callControl struct {
	h       *Handler
	reg     calls.Registry
	minter  calls.Upstream // nil: the relay is off
	watcher calls.Watcher
	cors    *cors.Cors
	// hold is how long a reserved slot waits for its call, and lease how
	// long a claimed due call is left to its claimant: both outlast an
	// upstream call with its retries.
	hold, lease time.Duration

	ctx    context.Context // ends at Close: the watches, the sweep's calls
	cancel context.CancelFunc

	snap countSnapshot // the registry's Count, for health

	mu      sync.Mutex
	closed  bool
	stop    func() bool // the pending sweep
	sweeps  sync.WaitGroup
	watches map[string]context.CancelFunc // by call ID
}

func newCallControl(h *Handler, origins *originMatcher) *callControl {
	c := &h.cfg
	cc := &callControl{
		h:       h,
		reg:     c.calls.registry,
		watcher: c.calls.watcher,
		cors:    callCORS(origins, c),
		hold:    c.lim.UpstreamTimeout + 5*time.Second,
		lease:   c.lim.UpstreamTimeout + 5*time.Second,
		watches: make(map[string]context.CancelFunc),
	}
	cc.minter, _ = h.minter.(calls.Upstream)
	cc.ctx, cc.cancel = context.WithCancel(context.Background())
	if cc.minter != nil && c.lim.MaxCallDuration > 0 {
		cc.schedule(callTick)
	}
	return cc
}

// deadline is when a call that started at start is hung up (zero: never).
func (cc *callControl) deadline(start time.Time) time.Time {
	if d := cc.h.cfg.lim.MaxCallDuration; d > 0 {
		return start.Add(d)
	}
	return time.Time{}
}

// close stops the sweep and the watches, and waits for a running sweep. It
// hangs up nothing: another instance sharing the registry takes over the
// deadlines, and a restart does not cut users off.
func (cc *callControl) close() {
	cc.mu.Lock()
	if cc.closed {
		cc.mu.Unlock()
		return
	}
	cc.closed = true
	if cc.stop != nil && cc.stop() {
		cc.sweeps.Done() // it will not run
	}
	cc.mu.Unlock()
	cc.cancel()
	cc.sweeps.Wait()
}

func (cc *callControl) schedule(d time.Duration) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.closed {
		return
	}
	cc.sweeps.Add(1)
	cc.stop = cc.h.cfg.calls.after(d, func() {
		defer cc.sweeps.Done()
		cc.schedule(cc.sweep())
	})
}

// sweep claims the calls past their deadline and hangs them up, side by
// side; it returns when to sweep next.
func (cc *callControl) sweep() time.Duration {
	if cc.ctx.Err() != nil {
		return callTick
	}
	now := cc.h.now()
	due, err := cc.reg.ClaimDue(cc.ctx, now, cc.lease, claimBatch)
	if err != nil {
		if cc.ctx.Err() == nil {
			cc.h.log.LogAttrs(cc.ctx, slog.LevelWarn, "realtimeauth: call registry failed", attrErr(err))
		}
		return callTick
	}
	var wg sync.WaitGroup
	for _, c := range due {
		wg.Go(func() {
			if err := cc.end(cc.ctx, c, calls.EndMaxDuration); err != nil && cc.ctx.Err() == nil {
				// The claim runs out and the next sweep (here or on another
				// instance) tries again.
				cc.logCall(c, "realtimeauth: hang-up at the deadline failed", attrErr(err))
			}
		})
	}
	wg.Wait()
	if len(due) == claimBatch {
		return 0
	}
	return callTick
}

// end hangs c up upstream and removes it from the registry; it emits
// call_ended unless another instance or request ended it first. A failed
// hang-up leaves the call counted.
func (cc *callControl) end(ctx context.Context, c calls.Call, reason calls.EndReason) error {
	// Stop the watch first: the sideband closes when the hang-up lands, and
	// must not report the call as ended upstream.
	watched := cc.unwatch(c.ID)
	hctx, cancel := context.WithTimeout(ctx, cc.h.cfg.lim.UpstreamTimeout)
	err := cc.minter.Hangup(hctx, c.ID)
	cancel()
	if err != nil {
		if watched {
			cc.started(c)
		}
		return err
	}
	cc.ended(c.ID, reason)
	return nil
}

// unwatch stops watching call id and reports whether it was watched.
func (cc *callControl) unwatch(id string) bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	stop, ok := cc.watches[id]
	if ok {
		stop()
		delete(cc.watches, id)
	}
	return ok
}

// ended removes call id from the registry and emits call_ended, if it was
// still there.
func (cc *callControl) ended(id string, reason calls.EndReason) {
	cc.unwatch(id)
	now := cc.h.now()
	c, err := cc.reg.End(context.WithoutCancel(cc.ctx), id, now)
	switch {
	case errors.Is(err, calls.ErrNotFound):
		return
	case err != nil:
		cc.h.log.LogAttrs(cc.ctx, slog.LevelWarn, "realtimeauth: call registry failed; the call counts until it expires",
			slog.String("call_id", id), attrErr(err))
		return
	}
	cc.emit(c, EventCallEnded, reason, now)
}

// started begins watching a call that has just been bound.
func (cc *callControl) started(c calls.Call) {
	if cc.watcher == nil {
		return
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.closed {
		return
	}
	ctx, stop := context.WithCancel(cc.ctx)
	cc.watches[c.ID] = stop
	cc.watcher.Watch(ctx, cc.minter.Sideband(c.ID), func() { cc.ended(c.ID, calls.EndUpstream) })
}

// hangupOrphan hangs up a call the upstream placed but the registry could
// not record, in the background, within the upstream timeout.
func (cc *callControl) hangupOrphan(id string) {
	go func() {
		ctx, cancel := context.WithTimeout(cc.ctx, cc.h.cfg.lim.UpstreamTimeout)
		defer cancel()
		if err := cc.minter.Hangup(ctx, id); err != nil {
			cc.h.log.LogAttrs(ctx, slog.LevelWarn, "realtimeauth: could not hang up an unrecorded call",
				slog.String("call_id", id), attrErr(err))
		}
	}()
}

// endAll hangs up calls (a revoked session's or subject's), side by side.
func (cc *callControl) endAll(ctx context.Context, cs []calls.Call, reason calls.EndReason) error {
	errs := make([]error, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Go(func() { errs[i] = cc.end(ctx, c, reason) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// revokeSession hangs up the live calls of a revoked session.
func (cc *callControl) revokeSession(ctx context.Context, id string) error {
	if cc.minter == nil {
		return nil
	}
	cs, err := cc.reg.SessionCalls(ctx, id, cc.h.now())
	if err != nil {
		return err
	}
	return cc.endAll(ctx, cs, calls.EndRevoked)
}

// revokeSubject hangs up the live calls of a revoked subject.
func (cc *callControl) revokeSubject(ctx context.Context, subject string) error {
	if cc.minter == nil {
		return nil
	}
	cs, err := cc.reg.SubjectCalls(ctx, subject, cc.h.now())
	if err != nil {
		return err
	}
	return cc.endAll(ctx, cs, calls.EndRevoked)
}

// emit emits a call event that no request carries (a deadline, a
// revocation, the sideband), through the same hook and log.
func (cc *callControl) emit(c calls.Call, name EventName, reason calls.EndReason, now time.Time) {
	k := &request{
		r:         (&http.Request{Header: http.Header{}}).WithContext(context.WithoutCancel(cc.ctx)),
		client:    client{ip: c.ClientIP, key: c.Client},
		now:       now,
		subject:   c.Subject,
		sessionID: c.SessionID,
	}
	ev := cc.h.newEvent(k, name, SeverityInfo)
	ev.CallID, ev.Reason = c.ID, reason
	cc.h.emit(k, ev)
}

func (cc *callControl) logCall(c calls.Call, msg string, attrs ...slog.Attr) {
	cc.h.log.LogAttrs(cc.ctx, slog.LevelWarn, msg, append(attrs, slog.String("call_id", c.ID), slog.String("client_ip", c.ClientIP))...)
}

// count is the registry's count of live calls, or -1 when it failed.
func (cc *callControl) count(ctx context.Context, now time.Time) int {
	n, err := cc.reg.Count(ctx, now)
	if err != nil {
		return -1
	}
	return n
}

// snapshotCount is count, read at most snapshotAge before now, as health
// reads the session store's.
func (cc *callControl) snapshotCount(ctx context.Context, now time.Time) int {
	n, err := cc.snap.get(ctx, now, cc.reg.Count)
	if err != nil {
		return -1
	}
	return n
}

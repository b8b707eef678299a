package realtimeauth

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"
)

// retryPolicy runs an upstream call again after a retryable failure, within
// the context's deadline.
type retryPolicy struct {
	maxRetries       int
	initial, maxWait time.Duration
	// sleep waits d or until ctx ends; jitter returns a number in [0, 1);
	// now is the clock the deadline is read against. Tests replace them.
	sleep  func(ctx context.Context, d time.Duration) error
	jitter func() float64
	now    func() time.Time
	log    *slog.Logger
}

func newRetryPolicy(maxRetries int, initial, maxWait time.Duration, log *slog.Logger) retryPolicy {
	return retryPolicy{
		maxRetries: maxRetries,
		initial:    initial,
		maxWait:    maxWait,
		log:        log,
		sleep:      sleepCtx,
		jitter:     rand.Float64,
		now:        time.Now,
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// backoff is the wait before retry n (1-based) when the upstream names
// none: initial doubling up to maxWait, less up to a quarter of jitter so
// that many clients failing together do not retry together.
func (p retryPolicy) backoff(n int) time.Duration {
	d := p.initial
	for i := 1; i < n && d < p.maxWait; i++ {
		d *= 2
	}
	d = min(d, p.maxWait)
	return d - time.Duration(p.jitter()*float64(d)/4)
}

// run calls attempt until it succeeds, fails for good, runs out of retries
// or would have to wait past ctx's deadline. The error it returns is the
// last attempt's, with Attempts set.
func (p retryPolicy) run(ctx context.Context, attempt func() (Token, *UpstreamError, bool)) (Token, error) {
	for n := 1; ; n++ {
		tok, ue, retryable := attempt()
		if ue == nil {
			return tok, nil
		}
		ue.Attempts = n
		if !retryable || n > p.maxRetries {
			return Token{}, ue
		}
		wait := ue.RetryAfter
		if wait <= 0 {
			wait = p.backoff(n)
		}
		// Never wait past the deadline: a retry that cannot start in time
		// only turns a clear answer (say 429) into a timeout.
		if dl, ok := ctx.Deadline(); ok && dl.Sub(p.now()) <= wait {
			return Token{}, ue
		}
		p.logRetry(ctx, ue, wait)
		if err := p.sleep(ctx, wait); err != nil {
			return Token{}, ue
		}
	}
}

func (p retryPolicy) logRetry(ctx context.Context, ue *UpstreamError, wait time.Duration) {
	if p.log == nil || !p.log.Enabled(ctx, slog.LevelWarn) {
		return
	}
	attrs := []slog.Attr{
		slog.Int("attempt", ue.Attempts),
		slog.Int("upstream_status", ue.StatusCode),
		slog.String("upstream_request_id", ue.RequestID),
		slog.Float64("wait", wait.Seconds()),
	}
	if id, ok := ctx.Value(requestIDKey{}).(string); ok {
		attrs = append(attrs, slog.String("request_id", id)) // the handler's request
	}
	if ue.Message != "" {
		attrs = append(attrs, slog.String("upstream_message", ue.Message))
	}
	if ue.Err != nil {
		attrs = append(attrs, slog.String("cause", ue.Err.Error()))
	}
	p.log.LogAttrs(ctx, slog.LevelWarn, "realtimeauth: retrying mint", attrs...)
}

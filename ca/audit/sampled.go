package audit

import (
	"context"
	"log/slog"
	"sync"

	"golang.org/x/time/rate"
	"k8s.io/utils/clock"
)

// Unauthenticated denials are sampled: anyone who can reach the port can
// cause them, one per request, so writing each would let an anonymous
// caller flood the audit trail (and the disk behind it). Per reason, at most
// UnauthenticatedRate lines a second are written (bursts of
// UnauthenticatedBurst); the next line written for that reason carries the
// number left out in the field "suppressed". The metrics count every
// denial; decisions about authenticated callers are never sampled.
const (
	UnauthenticatedRate  = 10
	UnauthenticatedBurst = 50
	// maxSampledReasons bounds the table; reasons are a fixed set, but a
	// new one beyond it shares the "other" bucket.
	maxSampledReasons = 64
)

type sampler struct {
	clock clock.PassiveClock
	mu    sync.Mutex
	by    map[string]*sampled
}

type sampled struct {
	lim        *rate.Limiter
	suppressed uint64
}

// WithClock sets the clock the sampler reads (tests); the default is the
// real one.
func (a *Logger) WithClock(c clock.PassiveClock) *Logger {
	a.s = &sampler{clock: c, by: map[string]*sampled{}}
	return a
}

// DeniedUnauthenticated records a refusal of a caller that did not
// authenticate, sampled per reason (see UnauthenticatedRate).
func (a *Logger) DeniedUnauthenticated(ctx context.Context, d Decision) {
	n, ok := a.s.allow(d.Reason)
	if !ok {
		return
	}
	a.l.LogAttrs(ctx, slog.LevelWarn, EventDenied,
		slog.String("event", EventDenied),
		slog.String("identity", d.Identity),
		slog.String("requester", d.Requester),
		slog.String("reason", d.Reason),
		slog.String("message", d.Message),
		slog.Uint64("suppressed", n),
	)
}

// allow reports whether a line for reason may be written now, and how many
// were left out since the last one.
func (s *sampler) allow(reason string) (uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.by[reason]
	if !ok {
		if len(s.by) >= maxSampledReasons {
			reason = "other"
			e = s.by[reason]
		}
		if e == nil {
			e = &sampled{lim: rate.NewLimiter(UnauthenticatedRate, UnauthenticatedBurst)}
			s.by[reason] = e
		}
	}
	if !e.lim.AllowN(s.clock.Now(), 1) {
		e.suppressed++
		return 0, false
	}
	n := e.suppressed
	e.suppressed = 0
	return n, true
}

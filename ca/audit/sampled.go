package audit

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/apimachinery/pkg/util/cache"
	"k8s.io/utils/clock"
)

// Unauthenticated denials are sampled: anyone who can reach the port can
// cause them, one per request, so writing each would let an anonymous
// caller flood the audit trail (and the disk behind it). Per reason, at most
// UnauthenticatedRate lines a second are written (bursts of
// UnauthenticatedBurst); the next line written for that reason carries the
// number left out in the field "suppressed".
//
// The refusals an authenticated caller can repeat at no cost (those decided
// before or by its rate limit: [Logger.DeniedRepeatable]) are sampled per
// caller identity and reason: at most CallerDenialRate lines a second
// (bursts of CallerDenialBurst), so that one workload cannot push older
// records out of a size-rotated audit file. Every other decision about an
// authenticated caller is written. The metrics count every denial.
const (
	UnauthenticatedRate  = 10
	UnauthenticatedBurst = 50
	CallerDenialRate     = 1
	CallerDenialBurst    = 10
	// maxSampledReasons bounds the table; reasons are a fixed set, but a
	// new one beyond it shares the "other" bucket.
	maxSampledReasons = 64
	// maxSampledCallers bounds the table of callers (as the rate limiter's
	// MaxIdentities); the least recently denied goes first. A caller's
	// entry is kept for callerSampleTTL after its last refusal, so that a
	// count left out is written with the caller's next refused line.
	maxSampledCallers = 100000
	callerSampleTTL   = time.Hour
)

type sampler struct {
	clock   clock.PassiveClock
	mu      sync.Mutex
	by      map[string]*Sample
	callers *cache.LRUExpireCache // identity NUL reason → *Sample
}

// Sample admits a line at most at its rate and counts the lines it left
// out, for the next line to carry as "suppressed". It is the one sampler of
// meshca's logs: the audit lines here, net/http's error lines of the
// servers. It is not safe for concurrent use; its owner locks.
type Sample struct {
	lim        *rate.Limiter
	suppressed uint64
}

// NewSample admits r lines a second, in bursts of burst.
func NewSample(r rate.Limit, burst int) *Sample { return &Sample{lim: rate.NewLimiter(r, burst)} }

// WithClock sets the clock the sampler reads (tests); the default is the
// real one.
func (a *Logger) WithClock(c clock.PassiveClock) *Logger {
	a.s = &sampler{clock: c, by: map[string]*Sample{},
		callers: cache.NewLRUExpireCacheWithClock(maxSampledCallers, c)}
	return a
}

// DeniedUnauthenticated records a refusal of a caller that did not
// authenticate, sampled per reason (see UnauthenticatedRate).
func (a *Logger) DeniedUnauthenticated(ctx context.Context, d Decision) {
	if n, ok := a.s.allow(d.Reason); ok {
		a.l.LogAttrs(ctx, slog.LevelWarn, EventDenied, deniedAttrs(d, slog.Uint64("suppressed", n))...)
	}
}

// DeniedRepeatable records a refusal of an authenticated caller that the
// caller can repeat as fast as it likes: one decided before its rate limit
// is applied (impersonation, CertSigner), or by the limit itself. It is
// sampled per d.Identity and d.Reason (see CallerDenialRate); the next line
// carries the number left out in "suppressed".
func (a *Logger) DeniedRepeatable(ctx context.Context, d Decision) {
	if n, ok := a.s.allowCaller(d.Identity, d.Reason); ok {
		a.l.LogAttrs(ctx, slog.LevelWarn, EventDenied, deniedAttrs(d, slog.Uint64("suppressed", n))...)
	}
}

// allowCaller is allow for the refusals of one caller identity.
func (s *sampler) allowCaller(identity, reason string) (uint64, bool) {
	key := identity + "\x00" + reason
	s.mu.Lock()
	defer s.mu.Unlock()
	var e *Sample
	if v, ok := s.callers.Get(key); ok {
		e = v.(*Sample)
	} else {
		e = NewSample(CallerDenialRate, CallerDenialBurst)
	}
	s.callers.Add(key, e, callerSampleTTL)
	return e.Take(s.clock.Now())
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
			e = NewSample(UnauthenticatedRate, UnauthenticatedBurst)
			s.by[reason] = e
		}
	}
	return e.Take(s.clock.Now())
}

// Take reports whether a line may be written at now, and how many were left
// out since the last one written.
func (e *Sample) Take(now time.Time) (uint64, bool) {
	if !e.lim.AllowN(now, 1) {
		e.suppressed++
		return 0, false
	}
	n := e.suppressed
	e.suppressed = 0
	return n, true
}

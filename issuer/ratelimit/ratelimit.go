// Package ratelimit owns the overload protection of meshca's front doors: a
// token bucket per identity, so that one crash-looping workload cannot starve
// the mesh, and a global bound on concurrent signing, so that a mass restart
// queues briefly and then gets ResourceExhausted (which istio-agent and
// ztunnel retry) instead of piling up.
package ratelimit

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/apimachinery/pkg/util/cache"
	"k8s.io/utils/clock"
)

// Options configure a Limiter. Zero values disable the respective limit.
type Options struct {
	// PerIdentityQPS and PerIdentityBurst shape each identity's bucket.
	PerIdentityQPS   float64
	PerIdentityBurst int
	// MaxConcurrent bounds signing in flight across all callers.
	MaxConcurrent int
	// QueueTimeout is how long a request waits for a concurrency slot.
	QueueTimeout time.Duration
	// MaxIdentities bounds memory (default 100000). A bucket idle long
	// enough to be full again is forgotten (a new one is the same); when
	// the table is full the least recently used bucket goes, one at a time.
	MaxIdentities int
	// Clock is the clock; default the real one.
	Clock clock.Clock
}

// Limiter applies both limits.
type Limiter struct {
	opts Options
	idle time.Duration // a bucket unused this long is full again

	mu  sync.Mutex            // makes get-or-create of a bucket atomic
	per *cache.LRUExpireCache // identity → *rate.Limiter
	sem chan struct{}
}

// New returns a Limiter.
func New(opts Options) *Limiter {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.MaxIdentities == 0 {
		opts.MaxIdentities = 100000
	}
	if opts.PerIdentityBurst == 0 {
		opts.PerIdentityBurst = 1
	}
	l := &Limiter{opts: opts}
	if opts.PerIdentityQPS > 0 {
		l.idle = time.Duration(float64(opts.PerIdentityBurst)/opts.PerIdentityQPS*float64(time.Second)) + time.Second
		l.per = cache.NewLRUExpireCacheWithClock(opts.MaxIdentities, opts.Clock)
	}
	if opts.MaxConcurrent > 0 {
		l.sem = make(chan struct{}, opts.MaxConcurrent)
	}
	return l
}

// Allow takes one token from identity's bucket.
func (l *Limiter) Allow(identity string) bool {
	if l.opts.PerIdentityQPS <= 0 {
		return true
	}
	now := l.opts.Clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	var lim *rate.Limiter
	if v, ok := l.per.Get(identity); ok {
		lim = v.(*rate.Limiter)
	} else {
		lim = rate.NewLimiter(rate.Limit(l.opts.PerIdentityQPS), l.opts.PerIdentityBurst)
	}
	// Re-adding marks the bucket most recently used and restarts its
	// idle expiry.
	l.per.Add(identity, lim, l.idle)
	return lim.AllowN(now, 1)
}

// Spent reports whether identity's bucket holds less than one token now,
// without taking any or making a bucket.
func (l *Limiter) Spent(identity string) bool {
	if l.opts.PerIdentityQPS <= 0 {
		return false
	}
	now := l.opts.Clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	v, ok := l.per.Get(identity)
	return ok && v.(*rate.Limiter).TokensAt(now) < 1
}

// Acquire waits up to QueueTimeout for a concurrency slot. It returns a
// release function, or false when the server is saturated.
func (l *Limiter) Acquire(ctx context.Context) (func(), bool) {
	if ctx.Err() != nil {
		return nil, false
	}
	if l.sem == nil {
		return func() {}, true
	}
	select {
	case l.sem <- struct{}{}:
		return l.releaser(), true
	default:
	}
	if l.opts.QueueTimeout <= 0 {
		return nil, false
	}
	t := l.opts.Clock.NewTimer(l.opts.QueueTimeout)
	defer t.Stop()
	select {
	case l.sem <- struct{}{}:
		return l.releaser(), true
	case <-t.C():
		return nil, false
	case <-ctx.Done():
		return nil, false
	}
}

// releaser frees one slot, once however often it is called.
func (l *Limiter) releaser() func() {
	var once sync.Once
	return func() { once.Do(func() { <-l.sem }) }
}

// InFlight is the number of requests holding a slot.
func (l *Limiter) InFlight() int { return len(l.sem) }

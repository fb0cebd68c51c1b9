// Package ratelimit owns the overload protection of meshca's front doors: a
// token bucket per identity, so that one crash-looping workload cannot starve
// the mesh, and a global bound on concurrent signing, so that a mass restart
// queues briefly and then gets ResourceExhausted (which istio-agent and
// ztunnel retry) instead of piling up.
package ratelimit

import (
	"context"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"
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
	// MaxIdentities bounds memory; idle buckets are evicted first.
	MaxIdentities int
	Now           func() time.Time
}

// Limiter applies both limits.
type Limiter struct {
	opts Options
	mu   sync.Mutex
	per  map[string]*bucket
	sem  chan struct{}
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

// New returns a Limiter.
func New(opts Options) *Limiter {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxIdentities == 0 {
		opts.MaxIdentities = 100000
	}
	if opts.PerIdentityBurst == 0 {
		opts.PerIdentityBurst = 1
	}
	l := &Limiter{opts: opts, per: map[string]*bucket{}}
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
	now := l.opts.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.per[identity]
	if !ok {
		if len(l.per) >= l.opts.MaxIdentities {
			l.evictLocked(now)
		}
		b = &bucket{lim: rate.NewLimiter(rate.Limit(l.opts.PerIdentityQPS), l.opts.PerIdentityBurst)}
		l.per[identity] = b
	}
	b.seen = now
	return b.lim.AllowN(now, 1)
}

// evictLocked drops buckets idle long enough to be full again, or failing
// that the oldest half.
func (l *Limiter) evictLocked(now time.Time) {
	refill := time.Duration(float64(l.opts.PerIdentityBurst)/l.opts.PerIdentityQPS*float64(time.Second)) + time.Second
	for id, b := range l.per {
		if now.Sub(b.seen) > refill {
			delete(l.per, id)
		}
	}
	if len(l.per) < l.opts.MaxIdentities {
		return
	}
	// Least recently used first: map order is random, and dropping a bucket
	// that was just refused would reset a crash-looping identity's limit.
	ids := make([]string, 0, len(l.per))
	for id := range l.per {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b string) int { return l.per[a].seen.Compare(l.per[b].seen) })
	for _, id := range ids[:max(len(ids)/2, 1)] {
		delete(l.per, id)
	}
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
	t := time.NewTimer(l.opts.QueueTimeout)
	defer t.Stop()
	select {
	case l.sem <- struct{}{}:
		return l.releaser(), true
	case <-t.C:
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

package authn

import (
	"context"
	"sync"
	"time"
)

// reviewFlights runs at most one review per key at a time, shared by
// every caller of that key, and at most cap(slots) reviews at once across
// all keys and clusters.
//
// A review runs detached from the caller that started it, so that the
// other callers of the key still get it, but not beyond its callers: when
// the last one gives up, the review (or its wait for a slot) is cancelled
// and frees its slot. A garbage token therefore costs a review only while
// somebody waits for it, and never more than the in-flight bound.
type reviewFlights struct {
	timeout time.Duration
	slots   chan struct{}

	mu sync.Mutex
	m  map[reviewKey]*reviewFlight
}

type reviewFlight struct {
	done    chan struct{}
	res     reviewResult
	waiters int
	cancel  context.CancelFunc
}

func newReviewFlights(maxInFlight int, timeout time.Duration) *reviewFlights {
	return &reviewFlights{timeout: timeout, slots: make(chan struct{}, maxInFlight), m: map[reviewKey]*reviewFlight{}}
}

// do waits for the review of key, starting it when none is running. run
// gets a context that ends after timeout or when every caller has left,
// and acquired, false when that context ended before a slot was free
// (run must then not ask an apiserver). do returns false when ctx ends first.
func (g *reviewFlights) do(ctx context.Context, key reviewKey, run func(ctx context.Context, acquired bool) reviewResult) (reviewResult, bool) {
	g.mu.Lock()
	f, ok := g.m[key]
	if !ok {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.timeout)
		f = &reviewFlight{done: make(chan struct{}), cancel: cancel}
		g.m[key] = f
		go g.run(fctx, key, f, run)
	}
	f.waiters++
	g.mu.Unlock()

	select {
	case <-f.done:
		return f.res, true
	case <-ctx.Done():
		g.mu.Lock()
		f.waiters--
		if f.waiters == 0 && g.m[key] == f {
			delete(g.m, key)
			f.cancel()
		}
		g.mu.Unlock()
		return reviewResult{}, false
	}
}

func (g *reviewFlights) run(ctx context.Context, key reviewKey, f *reviewFlight, run func(context.Context, bool) reviewResult) {
	acquired := false
	select {
	case g.slots <- struct{}{}:
		acquired = true
	case <-ctx.Done():
	}
	if acquired && ctx.Err() != nil { // both were ready: do not start a cancelled review
		<-g.slots
		acquired = false
	}
	f.res = run(ctx, acquired)
	if acquired {
		<-g.slots
	}
	f.cancel()
	g.mu.Lock()
	if g.m[key] == f {
		delete(g.m, key)
	}
	g.mu.Unlock()
	close(f.done)
}

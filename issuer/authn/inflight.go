package authn

import (
	"context"
	"net/netip"
	"sync"
	"time"
)

// reviewFlights runs at most one review per key at a time, shared by
// every caller of that key, at most maxInFlight reviews at once across all
// keys and clusters, and at most perPeer started by callers from one
// address.
//
// A caller that would start a review when no slot is free (globally or
// for its address) is refused at once rather than queued: queueing lets a
// flood hold every caller until its deadline, while a refusal answered as
// Unavailable makes istio-agent back off and retry.
//
// A review runs detached from the caller that started it, so that the
// other callers of the key still get it, but not beyond its callers: when
// the last one gives up, the review is cancelled and frees its slots. A
// garbage token therefore costs a review only while somebody waits for it.
type reviewFlights struct {
	timeout     time.Duration
	maxInFlight int
	perPeer     int

	mu       sync.Mutex
	m        map[reviewKey]*reviewFlight
	inFlight int
	byPeer   map[string]int
}

type reviewFlight struct {
	done    chan struct{}
	res     reviewResult
	waiters int
	cancel  context.CancelFunc
	peer    string
}

// refusal is why do refused to start a review ("" when it did not).
type refusal string

const (
	refusedNone       refusal = ""
	refusedOverloaded refusal = PreReviewOverloaded
	refusedPerPeer    refusal = PreReviewPerPeer
)

func newReviewFlights(maxInFlight, perPeer int, timeout time.Duration) *reviewFlights {
	return &reviewFlights{timeout: timeout, maxInFlight: maxInFlight, perPeer: perPeer,
		m: map[reviewKey]*reviewFlight{}, byPeer: map[string]int{}}
}

// do waits for the review of key, starting it when none is running and a
// slot is free; it returns the refusal at once when none is. run gets a
// context that ends after timeout or when every caller has left. do
// returns ok false when ctx ends first. An empty peer (an in-process
// caller with no address) is bound by maxInFlight only.
func (g *reviewFlights) do(ctx context.Context, key reviewKey, peerAddr string, run func(ctx context.Context) reviewResult) (res reviewResult, ok bool, why refusal) {
	peer := peerKey(peerAddr)
	g.mu.Lock()
	f, found := g.m[key]
	if !found {
		switch {
		case g.inFlight >= g.maxInFlight:
			g.mu.Unlock()
			return reviewResult{}, false, refusedOverloaded
		case peer != "" && g.byPeer[peer] >= g.perPeer:
			g.mu.Unlock()
			return reviewResult{}, false, refusedPerPeer
		}
		g.inFlight++
		if peer != "" {
			g.byPeer[peer]++
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.timeout)
		f = &reviewFlight{done: make(chan struct{}), cancel: cancel, peer: peer}
		g.m[key] = f
		go g.run(fctx, key, f, run)
	}
	f.waiters++
	g.mu.Unlock()

	select {
	case <-f.done:
		return f.res, true, refusedNone
	case <-ctx.Done():
		g.mu.Lock()
		f.waiters--
		if f.waiters == 0 && g.m[key] == f {
			delete(g.m, key)
			f.cancel()
		}
		g.mu.Unlock()
		return reviewResult{}, false, refusedNone
	}
}

func (g *reviewFlights) run(ctx context.Context, key reviewKey, f *reviewFlight, run func(context.Context) reviewResult) {
	defer func() {
		if r := recover(); r != nil {
			f.res = reviewResult{fail: panicFailure(TokenReview, r)}
		}
		f.cancel()
		g.mu.Lock()
		g.inFlight--
		if f.peer != "" {
			if g.byPeer[f.peer]--; g.byPeer[f.peer] <= 0 {
				delete(g.byPeer, f.peer)
			}
		}
		if g.m[key] == f {
			delete(g.m, key)
		}
		g.mu.Unlock()
		close(f.done)
	}()
	f.res = run(ctx)
}

// peerKey is what the per-peer bound counts by: an IPv4 address, or the
// /64 prefix of an IPv6 address (the usual assignment to one host or
// subscriber, RFC 4291 §2.5.4, so that one attacker cannot use 2^64
// addresses as 2^64 peers). A string that is not an IP address is used as
// it is.
func peerKey(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	ip = ip.Unmap()
	if ip.Is4() {
		return ip.String()
	}
	p, err := ip.Prefix(64)
	if err != nil {
		return addr
	}
	return p.String()
}

// slotsInUse is the number of reviews in flight (tests).
func (g *reviewFlights) slotsInUse() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.inFlight
}

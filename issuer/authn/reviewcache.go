package authn

import (
	"crypto/sha256"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/cache"
	"k8s.io/utils/clock"
)

// reviewKey identifies one token reviewed by one cluster. It is a SHA-256,
// so the cache never holds a token.
type reviewKey [sha256.Size]byte

func newReviewKey(cluster, token string) reviewKey {
	h := sha256.New()
	h.Write([]byte(cluster))
	h.Write([]byte{0})
	h.Write([]byte(token))
	var k reviewKey
	h.Sum(k[:0])
	return k
}

// reviewResult is the outcome of one review: a caller or a failure.
type reviewResult struct {
	caller *Caller
	fail   *Failure
}

// get returns a copy that the receiver may change (the chain sets
// Caller.Authenticator).
func (r reviewResult) get() (*Caller, error) {
	if r.fail != nil {
		return nil, r.fail
	}
	c := *r.caller
	return &c, nil
}

// positiveEntry is a cached success and when it was stored, so that a
// later deletion of its pod or ServiceAccount can void it.
type positiveEntry struct {
	caller *Caller
	stored time.Time
}

// reviewCache holds review results in two bounded LRU caches with a
// per-entry expiry (k8s.io/apimachinery's LRUExpireCache, the one cache
// implementation of meshca's front door): successes in one, rejections in
// a separate, smaller one, so that a flood of distinct garbage tokens
// evicts only other rejections and never a success.
//
// A third bounded cache remembers deletions (of a pod by UID, of a
// ServiceAccount by cluster/namespace/name) for as long as a success can
// live; a success stored before a deletion that names it is dropped.
type reviewCache struct {
	clock  clock.PassiveClock
	posTTL time.Duration
	pos    *cache.LRUExpireCache // reviewKey → positiveEntry; nil: off
	neg    *cache.LRUExpireCache // reviewKey → *Failure; nil: off

	deleted    *cache.LRUExpireCache // deletionKey → time.Time
	deletedMax int

	mu        sync.Mutex // guards the deletion window counters
	window    time.Time  // start of the current posTTL-long window
	inWindow  int        // deletions recorded in the current window
	lastCount int        // deletions recorded in the previous window
}

func newReviewCache(clk clock.PassiveClock, posSize, negSize int, posTTL time.Duration) *reviewCache {
	c := &reviewCache{clock: clk, posTTL: posTTL, deletedMax: max(posSize, 1)}
	if posSize > 0 && posTTL > 0 {
		c.pos = cache.NewLRUExpireCacheWithClock(posSize, clk)
		c.deleted = cache.NewLRUExpireCacheWithClock(c.deletedMax, clk)
	}
	if negSize > 0 {
		c.neg = cache.NewLRUExpireCacheWithClock(negSize, clk)
	}
	return c
}

// get returns the cached result for k: a live success whose pod and
// ServiceAccount were not deleted since, or a live rejection.
func (c *reviewCache) get(k reviewKey) (reviewResult, bool) {
	if c.pos != nil {
		if v, ok := c.pos.Get(k); ok {
			e := v.(positiveEntry)
			if !c.deletedSince(e) {
				return reviewResult{caller: e.caller}, true
			}
			c.pos.Remove(k)
		}
	}
	if c.neg != nil {
		if v, ok := c.neg.Get(k); ok {
			return reviewResult{fail: v.(*Failure)}, true
		}
	}
	return reviewResult{}, false
}

// putPositive stores a success for ttl (already bounded by the token's exp).
func (c *reviewCache) putPositive(k reviewKey, caller *Caller, ttl time.Duration) {
	if c.pos == nil || ttl <= 0 {
		return
	}
	c.pos.Add(k, positiveEntry{caller: caller, stored: c.clock.Now()}, min(ttl, c.posTTL))
}

// putNegative stores a rejection for ttl.
func (c *reviewCache) putNegative(k reviewKey, f *Failure, ttl time.Duration) {
	if c.neg == nil || ttl <= 0 {
		return
	}
	c.neg.Add(k, f, ttl)
}

func podDeletionKey(cluster, uid string) string { return cluster + "\x00pod\x00" + uid }
func serviceAccountDeletionKey(cluster, ns, sa string) string {
	return cluster + "\x00sa\x00" + ns + "\x00" + sa
}

func (c *reviewCache) deletedSince(e positiveEntry) bool {
	t, ok := c.deletedAt(e.caller)
	return ok && !t.Before(e.stored)
}

// deletedAt returns when the caller's pod or ServiceAccount was last seen
// deleted, if that is remembered.
func (c *reviewCache) deletedAt(caller *Caller) (time.Time, bool) {
	if c.deleted == nil {
		return time.Time{}, false
	}
	keys := []string{serviceAccountDeletionKey(caller.Cluster, caller.Namespace, caller.ServiceAccount)}
	if caller.PodUID != "" {
		keys = append(keys, podDeletionKey(caller.Cluster, caller.PodUID))
	}
	var last time.Time
	found := false
	for _, key := range keys {
		if v, ok := c.deleted.Get(key); ok {
			if t := v.(time.Time); !found || t.After(last) {
				last, found = t, true
			}
		}
	}
	return last, found
}

// podDeleted reports whether the pod with the caller's PodUID was seen
// deleted. A UID is never reused, so a token bound to it is dead even if
// an apiserver still authenticates it from its own short-lived cache.
func (c *reviewCache) podDeleted(caller *Caller) bool {
	if c.deleted == nil || caller.PodUID == "" {
		return false
	}
	_, ok := c.deleted.Get(podDeletionKey(caller.Cluster, caller.PodUID))
	return ok
}

// recordDeletion remembers a deletion for posTTL (no success stored
// before it outlives that). Should more deletions arrive within posTTL
// than the memory holds, a remembered deletion could be evicted while
// still needed; then every success is dropped instead.
func (c *reviewCache) recordDeletion(key string) {
	if c.pos == nil {
		return
	}
	now := c.clock.Now()
	c.mu.Lock()
	// A remembered deletion lives posTTL, so the live ones were all
	// recorded in this window or the previous one (each at least posTTL
	// long).
	if now.Sub(c.window) >= c.posTTL {
		c.lastCount, c.inWindow, c.window = c.inWindow, 0, now
	}
	c.inWindow++
	overflow := c.inWindow+c.lastCount > c.deletedMax
	c.mu.Unlock()
	if overflow {
		c.pos.RemoveAll(func(any) bool { return true })
	}
	c.deleted.Add(key, now, c.posTTL)
}

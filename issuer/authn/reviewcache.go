package authn

import (
	"container/list"
	"crypto/sha256"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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

type cacheEntry struct {
	key     reviewKey
	result  reviewResult
	expires time.Time
}

// reviewCache is a size-bounded LRU of review results with a per-entry
// expiry. The zero max disables it.
type reviewCache struct {
	mu    sync.Mutex
	max   int
	order *list.List // front = most recently used; values are *cacheEntry
	items map[reviewKey]*list.Element
}

func newReviewCache(max int) *reviewCache {
	return &reviewCache{max: max, order: list.New(), items: map[reviewKey]*list.Element{}}
}

// get returns the live entry for k; an expired entry is dropped.
func (c *reviewCache) get(k reviewKey, now time.Time) (reviewResult, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[k]
	if !ok {
		return reviewResult{}, false
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.order.Remove(el)
		delete(c.items, k)
		return reviewResult{}, false
	}
	c.order.MoveToFront(el)
	return e.result, true
}

// put stores r until expires, evicting the least recently used entry when
// full. A result that expires at or before now is not stored.
func (c *reviewCache) put(k reviewKey, r reviewResult, now, expires time.Time) {
	if c.max <= 0 || !now.Before(expires) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[k]; ok {
		e := el.Value.(*cacheEntry)
		e.result, e.expires = r, expires
		c.order.MoveToFront(el)
		return
	}
	for c.order.Len() >= c.max {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.items, oldest.Value.(*cacheEntry).key)
	}
	c.items[k] = c.order.PushFront(&cacheEntry{key: k, result: r, expires: expires})
}

// len returns the number of entries, expired ones included.
func (c *reviewCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

// Metric names of the TokenReview authenticator.
const (
	MetricCacheHits   = "meshca_tokenreview_cache_hits_total"
	MetricCacheMisses = "meshca_tokenreview_cache_misses_total"
	MetricReviews     = "meshca_tokenreview_requests_total"
)

type reviewMetrics struct {
	hits    prometheus.Counter
	misses  prometheus.Counter
	reviews *prometheus.CounterVec
}

func newReviewMetrics(r prometheus.Registerer) *reviewMetrics {
	m := &reviewMetrics{
		hits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricCacheHits,
			Help: "TokenReview results answered from the cache.",
		}),
		misses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricCacheMisses,
			Help: "TokenReview results not in the cache (a review was made or joined).",
		}),
		reviews: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricReviews,
			Help: "TokenReviews sent to an apiserver, by cluster and result (authenticated, rejected, error).",
		}, []string{"cluster", "result"}),
	}
	if r != nil {
		r.MustRegister(m.hits, m.misses, m.reviews)
	}
	return m
}

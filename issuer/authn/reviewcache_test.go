package authn

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestReviewCache_EvictsLeastRecentlyUsedWhenFull(t *testing.T) {
	c := newReviewCache(2)
	now := time.Now()
	later := now.Add(time.Hour)
	a, b, d := newReviewKey("k", "token-a"), newReviewKey("k", "token-b"), newReviewKey("k", "token-d")
	ok := reviewResult{caller: &Caller{}}
	c.put(a, ok, now, later)
	c.put(b, ok, now, later)
	_, hit := c.get(a, now) // a is now the most recently used
	require.True(t, hit)
	c.put(d, ok, now, later)

	require.Equal(t, 2, c.len())
	_, hit = c.get(b, now)
	require.False(t, hit, "b was least recently used")
	_, hit = c.get(a, now)
	require.True(t, hit)
	_, hit = c.get(d, now)
	require.True(t, hit)
}

func TestReviewCache_KeyBindsTokenToCluster(t *testing.T) {
	require.NotEqual(t, newReviewKey("Kubernetes", "t"), newReviewKey("remote-1", "t"))
	require.NotEqual(t, newReviewKey("a", "bc"), newReviewKey("ab", "c"), "the separator prevents splicing")
}

func TestReviewCache_DropsExpiredEntriesAndNeverStoresDeadOnes(t *testing.T) {
	c := newReviewCache(10)
	now := time.Now()
	k := newReviewKey("k", "t")
	c.put(k, reviewResult{fail: &Failure{}}, now, now)
	require.Zero(t, c.len(), "an entry that expires now is not stored")
	c.put(k, reviewResult{fail: &Failure{}}, now, now.Add(time.Second))
	_, hit := c.get(k, now.Add(time.Second))
	require.False(t, hit)
	require.Zero(t, c.len())
}

package authn

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	testingclock "k8s.io/utils/clock/testing"
)

func success(ns, sa, podUID string) *Caller {
	return &Caller{Cluster: "k", Namespace: ns, ServiceAccount: sa, PodUID: podUID}
}

func TestReviewCache_EvictsLeastRecentlyUsedWhenFull(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Now())
	c := newReviewCache(clk, 2, 2, time.Hour)
	a, b, d := newReviewKey("k", "token-a"), newReviewKey("k", "token-b"), newReviewKey("k", "token-d")
	c.putPositive(a, success("ns", "a", ""), time.Hour)
	c.putPositive(b, success("ns", "b", ""), time.Hour)
	_, hit := c.get(a) // a is now the most recently used
	require.True(t, hit)
	c.putPositive(d, success("ns", "d", ""), time.Hour)

	_, hit = c.get(b)
	require.False(t, hit, "b was least recently used")
	_, hit = c.get(a)
	require.True(t, hit, "a full cache evicts one entry, not everything")
	_, hit = c.get(d)
	require.True(t, hit)
}

func TestReviewCache_RejectionsNeverEvictSuccesses(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Now())
	c := newReviewCache(clk, 4, 2, time.Hour)
	good := newReviewKey("k", "good")
	c.putPositive(good, success("ns", "sa", ""), time.Hour)
	for i := range 1000 {
		c.putNegative(newReviewKey("k", fmt.Sprint("garbage-", i)), &Failure{Reason: ReasonUnauthenticatedToken}, time.Minute)
	}
	r, hit := c.get(good)
	require.True(t, hit, "1000 rejections did not evict the success")
	require.NotNil(t, r.caller)
	_, hit = c.get(newReviewKey("k", "garbage-999"))
	require.True(t, hit, "the newest rejection is cached")
	_, hit = c.get(newReviewKey("k", "garbage-0"))
	require.False(t, hit, "the rejection cache holds only its own bound")
}

func TestReviewCache_KeyBindsTokenToCluster(t *testing.T) {
	require.NotEqual(t, newReviewKey("Kubernetes", "t"), newReviewKey("remote-1", "t"))
	require.NotEqual(t, newReviewKey("a", "bc"), newReviewKey("ab", "c"), "the separator prevents splicing")
}

func TestReviewCache_EntriesEndAtTheirTTL(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Now())
	c := newReviewCache(clk, 10, 10, time.Hour)
	k, n := newReviewKey("k", "t"), newReviewKey("k", "n")
	c.putPositive(k, success("ns", "sa", ""), 0)
	c.putNegative(n, &Failure{}, 0)
	_, hit := c.get(k)
	require.False(t, hit, "an entry with no time left is not stored")
	c.putPositive(k, success("ns", "sa", ""), 2*time.Hour)
	c.putNegative(n, &Failure{}, time.Second)
	clk.Step(time.Second + time.Nanosecond)
	_, hit = c.get(n)
	require.False(t, hit)
	clk.Step(time.Hour)
	_, hit = c.get(k)
	require.False(t, hit, "a success never outlives the cache TTL")
}

func TestReviewCache_DeletionVoidsEarlierSuccessesOnly(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Now())
	c := newReviewCache(clk, 10, 10, time.Hour)
	pod, sa, other := newReviewKey("k", "pod"), newReviewKey("k", "sa"), newReviewKey("k", "other")
	c.putPositive(pod, success("ns", "web", "uid-1"), time.Hour)
	c.putPositive(sa, success("ns", "api", ""), time.Hour)
	c.putPositive(other, success("ns", "web", "uid-2"), time.Hour)
	clk.Step(time.Second)

	c.recordDeletion(podDeletionKey("k", "uid-1"))
	c.recordDeletion(serviceAccountDeletionKey("k", "ns", "api"))
	_, hit := c.get(pod)
	require.False(t, hit, "the deleted pod's token")
	_, hit = c.get(sa)
	require.False(t, hit, "the deleted ServiceAccount's token")
	_, hit = c.get(other)
	require.True(t, hit, "another pod of the same ServiceAccount")

	clk.Step(time.Second)
	c.putPositive(sa, success("ns", "api", ""), time.Hour)
	_, hit = c.get(sa)
	require.True(t, hit, "a review after the deletion (the ServiceAccount was re-created) counts")
}

func TestReviewCache_TooManyDeletionsDropEverySuccess(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Now())
	c := newReviewCache(clk, 3, 1, time.Hour)
	k := newReviewKey("k", "t")
	c.putPositive(k, success("ns", "sa", "uid-0"), time.Hour)
	for i := range 3 {
		c.recordDeletion(podDeletionKey("k", fmt.Sprint("other-", i)))
	}
	_, hit := c.get(k)
	require.True(t, hit, "as many deletions as the memory holds")
	c.recordDeletion(podDeletionKey("k", "other-3"))
	_, hit = c.get(k)
	require.False(t, hit, "one more could evict a needed deletion: every success goes")
}

package ratelimit

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	testingclock "k8s.io/utils/clock/testing"
)

func newClock() *testingclock.FakeClock {
	return testingclock.NewFakeClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
}

// identities is the number of live buckets the limiter holds.
func (l *Limiter) identities() int {
	if l.per == nil {
		return 0
	}
	return len(l.per.Keys())
}

func TestAllow_BurstThenRefusal(t *testing.T) {
	c := newClock()
	l := New(Options{PerIdentityQPS: 1, PerIdentityBurst: 3, Clock: c})
	for i := range 3 {
		require.True(t, l.Allow("spiffe://td/ns/a/sa/x"), "request %d is within the burst", i+1)
	}
	require.False(t, l.Allow("spiffe://td/ns/a/sa/x"), "the fourth request at the same instant exceeds the burst")
	require.False(t, l.Allow("spiffe://td/ns/a/sa/x"), "a refused request does not earn a token")
}

func TestAllow_RefillsOneTokenAfterOneOverQPS(t *testing.T) {
	c := newClock()
	l := New(Options{PerIdentityQPS: 2, PerIdentityBurst: 1, Clock: c})
	id := "spiffe://td/ns/a/sa/x"
	require.True(t, l.Allow(id))
	require.False(t, l.Allow(id))

	c.Step(499 * time.Millisecond)
	require.False(t, l.Allow(id), "just before 1/QPS no token has been refilled")

	c.Step(time.Millisecond)
	require.True(t, l.Allow(id), "after exactly 1/QPS = 500ms one token is back")
	require.False(t, l.Allow(id), "and only one")

	c.Step(time.Hour)
	require.True(t, l.Allow(id))
	require.False(t, l.Allow(id), "a long idle period refills at most the burst")
}

func TestAllow_DefaultBurstIsOne(t *testing.T) {
	c := newClock()
	l := New(Options{PerIdentityQPS: 1, Clock: c})
	require.True(t, l.Allow("a"))
	require.False(t, l.Allow("a"))
}

func TestAllow_IdentitiesHaveIndependentBuckets(t *testing.T) {
	c := newClock()
	l := New(Options{PerIdentityQPS: 1, PerIdentityBurst: 2, Clock: c})
	require.True(t, l.Allow("crashloop"))
	require.True(t, l.Allow("crashloop"))
	require.False(t, l.Allow("crashloop"))

	require.True(t, l.Allow("neighbour"), "an exhausted identity does not starve another")
	require.True(t, l.Allow("neighbour"))
	require.False(t, l.Allow("neighbour"))
	require.False(t, l.Allow("crashloop"))
}

func TestAllow_ZeroQPSDisablesTheLimitAndKeepsNoState(t *testing.T) {
	l := New(Options{})
	for range 100 {
		require.True(t, l.Allow("a"))
	}
	require.Zero(t, l.identities())
}

func TestAllow_ConcurrentCallersGetExactlyTheBurst(t *testing.T) {
	c := newClock()
	l := New(Options{PerIdentityQPS: 1, PerIdentityBurst: 5, Clock: c})
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		allowed int
	)
	for range 50 {
		wg.Go(func() {
			if l.Allow("a") {
				mu.Lock()
				allowed++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	require.Equal(t, 5, allowed)
}

func TestAllow_EvictionKeepsMemoryBoundedAndAdmitsFreshIdentities(t *testing.T) {
	c := newClock()
	const maxIDs = 10
	l := New(Options{PerIdentityQPS: 0.001, PerIdentityBurst: 1, MaxIdentities: maxIDs, Clock: c})
	for i := range 1000 {
		c.Step(time.Millisecond) // never idle long enough to refill (1000s)
		require.True(t, l.Allow(fmt.Sprintf("id-%d", i)), "fresh identity %d is admitted", i)
		require.LessOrEqual(t, l.identities(), maxIDs)
	}
}

func TestAllow_EvictionDropsIdleBucketsFirst(t *testing.T) {
	c := newClock()
	// Burst 2 at 1 QPS: a bucket is full again after 2s, and idle after 3s.
	l := New(Options{PerIdentityQPS: 1, PerIdentityBurst: 2, MaxIdentities: 4, Clock: c})
	require.True(t, l.Allow("idle-1"))
	require.True(t, l.Allow("idle-2"))
	c.Step(2 * time.Second)
	require.True(t, l.Allow("busy-1"))
	require.True(t, l.Allow("busy-1"))
	require.True(t, l.Allow("busy-2"))
	require.True(t, l.Allow("busy-2"))
	require.Equal(t, 4, l.identities())

	c.Step(1500 * time.Millisecond) // idle-* unused for 3.5s; busy-* for 1.5s
	require.True(t, l.Allow("fresh"))
	require.Equal(t, 3, l.identities(), "only the two idle buckets were dropped")
	require.True(t, l.Allow("busy-1"), "1.5s refilled one token")
	require.False(t, l.Allow("busy-1"), "busy-1 kept its bucket, so it has no second token")
}

// A crash-looping identity must not escape its limit because other
// identities fill the table: eviction drops the least recently used
// buckets, never the one that was just refused.
func TestAllow_EvictionUnderPressureKeepsTheMostRecentlyUsedBuckets(t *testing.T) {
	const maxIDs = 10
	for trial := range 20 {
		c := newClock()
		l := New(Options{PerIdentityQPS: 0.001, PerIdentityBurst: 1, MaxIdentities: maxIDs, Clock: c})
		for i := range maxIDs - 1 {
			require.True(t, l.Allow(fmt.Sprintf("cold-%d", i)))
			c.Step(time.Millisecond)
		}
		require.True(t, l.Allow("hot"))
		c.Step(time.Millisecond)
		require.False(t, l.Allow("hot"))
		c.Step(time.Millisecond)

		require.True(t, l.Allow("fresh"), "trial %d: a fresh identity is admitted when the table is full", trial)
		require.LessOrEqual(t, l.identities(), maxIDs)
		require.False(t, l.Allow("hot"), "trial %d: eviction reset the bucket of the most recently refused identity", trial)
		require.False(t, l.Allow("fresh"), "trial %d: the fresh identity kept its bucket", trial)
	}
}

func TestAllow_MaxIdentitiesOneStillBoundsMemory(t *testing.T) {
	c := newClock()
	l := New(Options{PerIdentityQPS: 0.001, MaxIdentities: 1, Clock: c})
	for i := range 5 {
		c.Step(time.Millisecond)
		require.True(t, l.Allow(fmt.Sprintf("id-%d", i)))
		require.Equal(t, 1, l.identities())
	}
}

func TestAcquire_SlotsUpToMaxConcurrentThenRefusesWithoutQueue(t *testing.T) {
	l := New(Options{MaxConcurrent: 3})
	var releases []func()
	for i := range 3 {
		release, ok := l.Acquire(context.Background())
		require.True(t, ok, "slot %d", i+1)
		releases = append(releases, release)
		require.Equal(t, i+1, l.InFlight())
	}
	release, ok := l.Acquire(context.Background())
	require.False(t, ok, "with QueueTimeout 0 a saturated limiter refuses at once")
	require.Nil(t, release)
	require.Equal(t, 3, l.InFlight())

	releases[0]()
	require.Equal(t, 2, l.InFlight())
	release, ok = l.Acquire(context.Background())
	require.True(t, ok, "a released slot is reusable")
	require.Equal(t, 3, l.InFlight())
	release()
	releases[1]()
	releases[2]()
	require.Zero(t, l.InFlight())
}

func TestAcquire_ZeroMaxConcurrentDisablesTheBound(t *testing.T) {
	l := New(Options{})
	for range 100 {
		release, ok := l.Acquire(context.Background())
		require.True(t, ok)
		require.NotNil(t, release)
		release()
	}
	require.Zero(t, l.InFlight())
}

func TestAcquire_WaiterGetsTheSlotReleasedWithinQueueTimeout(t *testing.T) {
	// The timeout is generous so the outcome cannot depend on scheduling;
	// the slot is released right away, so the test does not wait for it.
	l := New(Options{MaxConcurrent: 1, QueueTimeout: time.Minute})
	holder, ok := l.Acquire(context.Background())
	require.True(t, ok)

	type result struct {
		release func()
		ok      bool
	}
	started := make(chan struct{})
	got := make(chan result, 1)
	go func() {
		close(started)
		r, ok := l.Acquire(context.Background())
		got <- result{r, ok}
	}()
	<-started
	select {
	case <-got:
		t.Fatal("the waiter got a slot while the only one was held")
	default:
	}
	holder()

	select {
	case r := <-got:
		require.True(t, r.ok, "the waiter takes the released slot")
		require.Equal(t, 1, l.InFlight())
		r.release()
		require.Zero(t, l.InFlight())
	case <-time.After(10 * time.Second):
		t.Fatal("the waiter did not get the released slot")
	}
}

func TestAcquire_WaiterTimesOutWhenNoSlotIsReleased(t *testing.T) {
	l := New(Options{MaxConcurrent: 1, QueueTimeout: 20 * time.Millisecond})
	holder, ok := l.Acquire(context.Background())
	require.True(t, ok)
	defer holder()

	release, ok := l.Acquire(context.Background())
	require.False(t, ok)
	require.Nil(t, release)
	require.Equal(t, 1, l.InFlight(), "a timed-out waiter holds nothing")
}

func TestAcquire_WaiterGivesUpWhenItsContextIsCancelled(t *testing.T) {
	l := New(Options{MaxConcurrent: 1, QueueTimeout: time.Hour})
	holder, ok := l.Acquire(context.Background())
	require.True(t, ok)
	defer holder()

	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan bool, 1)
	go func() {
		_, ok := l.Acquire(ctx)
		got <- ok
	}()
	cancel()
	select {
	case ok := <-got:
		require.False(t, ok)
	case <-time.After(10 * time.Second):
		t.Fatal("Acquire kept waiting after its context was cancelled")
	}
	require.Equal(t, 1, l.InFlight())

	// An already-cancelled caller does not wait out the QueueTimeout either.
	_, ok = l.Acquire(ctx)
	require.False(t, ok)
}

func TestAcquire_ReleaseTwiceFreesOnlyItsOwnSlotAndCancelledContextGetsNone(t *testing.T) {
	l := New(Options{MaxConcurrent: 2})
	r1, ok := l.Acquire(context.Background())
	require.True(t, ok)
	_, ok = l.Acquire(context.Background())
	require.True(t, ok)
	r1()
	r1()
	require.Equal(t, 1, l.InFlight(), "a second release must not free another caller's slot")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, ok = l.Acquire(ctx)
	require.False(t, ok)
	require.Equal(t, 1, l.InFlight())
}

// A full table forgets one bucket, the least recently used, not a whole
// batch: every other identity keeps its (empty) bucket.
func TestAllow_FullTableEvictsOnlyTheLeastRecentlyUsedBucket(t *testing.T) {
	const maxIDs = 10
	l := New(Options{PerIdentityQPS: 0.001, PerIdentityBurst: 1, MaxIdentities: maxIDs})
	for i := range maxIDs {
		require.True(t, l.Allow(fmt.Sprintf("id-%d", i)))
	}
	require.True(t, l.Allow("fresh"))
	for i := 1; i < maxIDs; i++ {
		require.False(t, l.Allow(fmt.Sprintf("id-%d", i)), "the bucket of id-%d was evicted with the least recently used one", i)
	}
	require.True(t, l.Allow("id-0"), "id-0 was the least recently used bucket")
}

func TestSpent_SaysWhenTheBucketIsEmptyWithoutMakingOne(t *testing.T) {
	c := newClock()
	l := New(Options{PerIdentityQPS: 10, PerIdentityBurst: 2, Clock: c})
	require.False(t, l.Spent("a"), "no bucket yet: nothing spent")
	require.Equal(t, 0, l.identities(), "Spent makes no bucket")
	require.True(t, l.Allow("a"))
	require.False(t, l.Spent("a"), "one token left")
	require.True(t, l.Allow("a"))
	require.True(t, l.Spent("a"))
	require.False(t, l.Spent("b"), "buckets are per identity")
	c.Step(99 * time.Millisecond)
	require.True(t, l.Spent("a"))
	c.Step(time.Millisecond)
	require.False(t, l.Spent("a"), "one token back after 1/QPS")
	require.False(t, New(Options{Clock: c}).Spent("a"), "no QPS: never spent")
}

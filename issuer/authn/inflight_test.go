package authn

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A review does not outlive its callers: when the last one leaves, the
// review's context ends and its slot is freed; a caller that stays keeps
// it running for the others.
func TestReviewFlights_ReviewEndsWhenTheLastCallerLeaves(t *testing.T) {
	g := newReviewFlights(1, time.Hour)
	key := newReviewKey("k", "t")
	started := make(chan context.Context, 1)
	run := func(ctx context.Context, acquired bool) reviewResult {
		require.True(t, acquired)
		started <- ctx
		<-ctx.Done()
		return reviewResult{fail: &Failure{Reason: ReasonReviewFailed}}
	}
	first, cancelFirst := context.WithCancel(context.Background())
	second, cancelSecond := context.WithCancel(context.Background())
	left := make(chan bool, 2)
	go func() { _, ok := g.do(first, key, run); left <- ok }()
	rctx := <-started
	go func() { _, ok := g.do(second, key, run); left <- ok }()
	// Wait until the second caller has joined the flight.
	require.Eventually(t, func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.m[key] != nil && g.m[key].waiters == 2
	}, 10*time.Second, time.Millisecond)

	cancelFirst()
	require.False(t, <-left)
	require.NoError(t, rctx.Err(), "another caller still waits: the review goes on")
	cancelSecond()
	require.False(t, <-left)
	select {
	case <-rctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the review outlived its last caller")
	}
	require.Eventually(t, func() bool { return len(g.slots) == 0 }, 10*time.Second, time.Millisecond, "the slot is freed")
}

// With every slot taken, a new review waits only as long as its callers.
func TestReviewFlights_FullSlotsMakeAReviewWaitOnlyWhileItsCallerDoes(t *testing.T) {
	g := newReviewFlights(1, time.Hour)
	g.slots <- struct{}{} // taken by someone else
	ran := make(chan bool, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, ok := g.do(ctx, newReviewKey("k", "t"), func(_ context.Context, acquired bool) reviewResult {
		ran <- acquired
		return reviewResult{fail: &Failure{}}
	})
	require.False(t, ok)
	select {
	case acquired := <-ran:
		require.False(t, acquired, "the review never got a slot, so it asked no apiserver")
	case <-time.After(10 * time.Second):
		t.Fatal("the review kept waiting for a slot after its caller left")
	}
	require.Len(t, g.slots, 1)
}

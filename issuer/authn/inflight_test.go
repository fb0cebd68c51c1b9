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
	g := newReviewFlights(1, 1, time.Hour)
	key := newReviewKey("k", "t")
	started := make(chan context.Context, 1)
	run := func(ctx context.Context) reviewResult {
		started <- ctx
		<-ctx.Done()
		return reviewResult{fail: &Failure{Reason: ReasonReviewFailed}}
	}
	first, cancelFirst := context.WithCancel(context.Background())
	second, cancelSecond := context.WithCancel(context.Background())
	left := make(chan bool, 2)
	go func() { _, ok, _ := g.do(first, key, "192.0.2.1", run); left <- ok }()
	rctx := <-started
	go func() { _, ok, _ := g.do(second, key, "192.0.2.1", run); left <- ok }()
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
	require.Eventually(t, func() bool { return g.slotsInUse() == 0 }, 10*time.Second, time.Millisecond, "the slot is freed")
}

// With every slot taken, a new review is refused at once and never runs;
// a caller of a review already running joins it without a slot.
func TestReviewFlights_FullSlotsRefuseANewReviewAtOnce(t *testing.T) {
	g := newReviewFlights(1, 1, time.Hour)
	release := make(chan struct{})
	running := make(chan struct{})
	busy := newReviewKey("k", "busy")
	done := make(chan reviewResult, 1)
	go func() {
		res, _, _ := g.do(context.Background(), busy, "192.0.2.1", func(context.Context) reviewResult {
			close(running)
			<-release
			return reviewResult{fail: &Failure{Reason: "x"}}
		})
		done <- res
	}()
	<-running
	ran := false
	_, ok, why := g.do(context.Background(), newReviewKey("k", "t"), "192.0.2.2", func(context.Context) reviewResult {
		ran = true
		return reviewResult{}
	})
	require.False(t, ok)
	require.Equal(t, refusedOverloaded, why)
	require.False(t, ran, "the refused review asked no apiserver")

	joined := make(chan reviewResult, 1)
	go func() {
		res, _, why := g.do(context.Background(), busy, "192.0.2.3", nil)
		require.Equal(t, refusedNone, why)
		joined <- res
	}()
	require.Eventually(t, func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.m[busy] != nil && g.m[busy].waiters == 2
	}, 10*time.Second, time.Millisecond)
	close(release)
	require.Equal(t, "x", (<-joined).fail.Reason)
	require.Equal(t, "x", (<-done).fail.Reason)
	require.Zero(t, g.slotsInUse())
}

// One IPv6 host usually holds a whole /64, so the per-peer bound groups
// IPv6 addresses by their /64; IPv4 addresses stay apart.
func TestPeerKey_GroupsIPv6By64(t *testing.T) {
	require.Equal(t, peerKey("2001:db8:1:2::1"), peerKey("2001:db8:1:2:ffff::9"))
	require.NotEqual(t, peerKey("2001:db8:1:2::1"), peerKey("2001:db8:1:3::1"))
	require.NotEqual(t, peerKey("192.0.2.1"), peerKey("192.0.2.2"))
	require.Equal(t, "192.0.2.1", peerKey("192.0.2.1"))
	require.Equal(t, "", peerKey(""))
}

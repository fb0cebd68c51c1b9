package rootrotation

import (
	"context"
	"crypto/x509"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/profile"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
)

// notLeading is a replica that does not hold the Lease.
type notLeading struct{}

func (notLeading) Leading() (store.Fence, bool) { return store.Fence{}, false }

// follower is a second replica on h's store, started before the
// rotation: its own composite source, intermediate manager and
// controller, as serve builds them on a replica that does not lead.
func (h *harness) follower() (*Controller, *Source, *fakeManager) {
	t := h.t
	a, err := h.newSource(context.Background(), h.a.spec)
	require.NoError(t, err)
	src, err := NewSource(a)
	require.NoError(t, err)
	mgr := &fakeManager{src: src.RootSource(), st: h.st, clk: h.clk}
	mgr.load()
	c, err := New(context.Background(), Options{
		Store: h.st, Intermediates: mgr, Source: src, NewSource: h.newSource, OldRootConfig: h.a.spec, Leader: notLeading{},
		Intermediate: config.IntermediateConfig{Profile: profile.Classical, KeyAlgorithm: keys.ECP256, Lifetime: config.Duration{Duration: 30 * 24 * time.Hour},
			CommonName: "meshca intermediate", Organization: "meshca"},
		Clock: h.clk, Alerts: &fakeAlerts{}, Interval: time.Minute,
		DefaultCertTTL: 24 * time.Hour, MaxCertTTL: 48 * time.Hour,
	})
	require.NoError(t, err)
	return c, src, mgr
}

// A replica that does not hold the Lease follows the holder's journal:
// from phase 1 on it hands out and trusts A and B (the holder's bytes),
// and B alone once the holder removed A. Before Follow it kept A until a
// new generation, so the workloads it served in phases 1 and 2 never
// learnt B before the switch.
func TestFollow_AFollowerPublishesThePhasesRoots(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	a, b := h.a.cert, h.b.cert
	fc, fsrc, fmgr := h.follower()
	require.Equal(t, []*x509.Certificate{a}, fmgr.bundle.Roots)
	require.NoError(t, fc.FollowOnce(ctx), "no rotation yet")
	require.Equal(t, 0, fmgr.refreshes)

	h.start()
	h.step() // phase 1 on the holder: A+B published
	h.requirePhase(PhaseWaitWorkloads)
	require.NoError(t, fc.FollowOnce(ctx))
	roots, err := fsrc.Roots(ctx)
	require.NoError(t, err)
	require.Equal(t, []*x509.Certificate{a, b}, roots)
	require.Equal(t, h.mgr.lastPublished(), fmgr.lastPublished(), "the holder's bytes")
	require.NoError(t, fc.FollowOnce(ctx))
	require.Equal(t, 1, fmgr.refreshes, "the same phase again: nothing to do")

	// No leaf is left under A: the holder switches to an intermediate under
	// B, waits for nothing and removes A. Until the follower's manager
	// adopts that intermediate, B alone cannot be its roots: FollowOnce
	// fails, and does it again at the next interval.
	h.clk.Step(12*time.Hour + 10*time.Minute)
	h.step()
	h.requirePhase(PhaseDone)
	require.ErrorContains(t, fc.FollowOnce(ctx), "chains to none of the new roots")
	fmgr.load() // the follower's manager adopts the holder's generation (intermediate.follow)
	require.NoError(t, fc.FollowOnce(ctx))
	roots, err = fsrc.Roots(ctx)
	require.NoError(t, err)
	require.Equal(t, []*x509.Certificate{b}, roots)
	require.Equal(t, pemOf(b), fmgr.lastPublished())
}

// A follower builds B's source once per rotation: adopting a later phase
// of the same rotation, or retrying one, keeps the B it runs. Building it
// again for every phase and every failed attempt left each earlier B (and
// its Run goroutine, started on the source's context) running for good.
func TestFollow_BuildsTheNewRootsSourceOncePerRotation(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	fc, _, fmgr := h.follower()
	built := 0
	newSource := fc.o.NewSource
	fc.o.NewSource = func(ctx context.Context, rc config.RootConfig) (root.Source, error) {
		built++
		return newSource(ctx, rc)
	}

	h.start()
	h.step()
	require.NoError(t, fc.FollowOnce(ctx))
	require.Equal(t, 1, built)
	h.clk.Step(12*time.Hour + 10*time.Minute)
	h.step()
	h.requirePhase(PhaseDone)
	for range 3 {
		require.Error(t, fc.FollowOnce(ctx), "the follower's manager has not adopted the new generation yet")
	}
	fmgr.load()
	require.NoError(t, fc.FollowOnce(ctx))
	require.Equal(t, 1, built, "the same rotation: the same B")
}

// leading is a replica that holds the Lease.
type leading struct{}

func (leading) Leading() (store.Fence, bool) { return store.Fence{}, true }

// A replica that gained the Lease after Follow checked it: its Run owns
// the rotation, and FollowOnce, waiting for the lock meanwhile, must not
// adopt a journal it read before Run moved on.
func TestFollow_OnceIsANoOpOnTheLeaseHolder(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	fc, _, fmgr := h.follower()
	h.start()
	h.step()
	fc.o.Leader = leading{}
	require.NoError(t, fc.FollowOnce(ctx))
	require.Equal(t, 0, fmgr.refreshes)
	_, ok := fc.Record()
	require.False(t, ok, "nothing adopted")
}

package crl_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/crl"
)

// onPrune is the store with a hook that runs as a prune begins: the
// moment another replica's revocation may commit, between the republish's
// rebuild and the reload of the revoked set that follows a prune.
type onPrune struct {
	crl.Backend
	hook func()
}

func (s *onPrune) PruneRevocations(ctx context.Context, cutoff time.Time) (int, error) {
	if s.hook != nil {
		s.hook()
		s.hook = nil
	}
	return s.Backend.PruneRevocations(ctx, cutoff)
}

// TestFollow_ARevocationCommittedDuringAPruneIsBuilt: a follower whose
// revoked set is reloaded after a prune still rebuilds the CRL for a
// revocation another replica committed in between. Before, the reload put
// it in the set, Follow then started after it and took it as built, and
// the CRL lacked it until the next republish (half the CRL validity).
func TestFollow_ARevocationCommittedDuringAPruneIsBuilt(t *testing.T) {
	p := newMgrPKI(t)
	ctx := context.Background()
	now := p.clk.Now()
	_, short := p.issue(t, p.active, appID, now.Add(time.Hour))
	_, other := p.issue(t, p.active, appID, now.Add(72*time.Hour))
	// The leader revoked short before this follower started; it expires
	// and is pruned at the republish after more than one CRL period.
	_, err := p.st.Revoke(ctx, []store.Revocation{{Serial: short.Serial, Kind: store.KindLeaf, Generation: p.active, Known: true, NotAfter: short.NotAfter, RevokedAt: now}})
	require.NoError(t, err)
	st := &onPrune{Backend: p.st}
	e := newManager(t, p, func(o *crl.Options) { o.Store = st })
	e.run(t)
	gen := crl.ScopeGeneration(p.active)

	// Three republishes: short expired 35h before the third, which prunes
	// it; the leader's revocation of other commits as that prune begins.
	var hookErr error
	for i := range 3 {
		if i == 2 {
			st.hook = func() { // in the manager's goroutine
				_, hookErr = p.st.Revoke(ctx, []store.Revocation{{Serial: other.Serial, Kind: store.KindLeaf, Generation: p.active, Known: true, NotAfter: other.NotAfter, RevokedAt: p.clk.Now()}})
			}
		}
		n := e.pub.count()
		p.clk.Step(12 * time.Hour)
		require.Eventually(t, func() bool { return e.pub.count() > n }, 5*time.Second, time.Millisecond, "republish %d", i)
		require.Eventually(t, func() bool { return p.clk.HasWaiters() }, 5*time.Second, time.Millisecond)
	}
	require.NoError(t, hookErr)
	_, err = p.st.GetRevocation(ctx, short.Serial)
	require.ErrorIs(t, err, store.ErrNotFound, "pruned")
	_, fl := e.crl(t, gen, false)
	require.NotContains(t, serialsOf(fl), other.Serial, "committed after the republish's rebuild")

	// The follower's next Follow: the CRL lists it after the coalescing
	// window.
	require.NoError(t, e.m.Follow(ctx))
	n := e.pub.count()
	e.stepPastCoalescing(t, time.Second)
	require.Eventually(t, func() bool { return e.pub.count() > n }, 5*time.Second, time.Millisecond, "a rebuild for the followed revocation")
	_, fl = e.crl(t, gen, false)
	require.Contains(t, serialsOf(fl), other.Serial)
}

// onRevoke is the store with a hook that runs after a revocation commits,
// before the Manager that asked for it schedules its rebuild.
type onRevoke struct {
	crl.Backend
	hook func()
}

func (s *onRevoke) Revoke(ctx context.Context, recs []store.Revocation) ([]store.Revocation, error) {
	out, err := s.Backend.Revoke(ctx, recs)
	if err == nil && s.hook != nil {
		s.hook()
		s.hook = nil
	}
	return out, err
}

// TestFollow_TheHoldersOwnRevocationReadBeforeItIsScheduledIsBuiltOnce:
// every replica of a shared store, the Lease holder too, follows the
// store, so the holder's Follow can read its own revocation between its
// commit and Revoke's scheduling, and the rebuild that Follow started can
// run in between. Revoke's scheduling then changes no CRL, so it starts no
// second rebuild (which would move the CRL number without a change), and
// the revocation is counted once.
func TestFollow_TheHoldersOwnRevocationReadBeforeItIsScheduledIsBuiltOnce(t *testing.T) {
	p := newMgrPKI(t)
	ctx := context.Background()
	_, is := p.issue(t, p.active, appID, p.clk.Now().Add(72*time.Hour))
	st := &onRevoke{Backend: p.st}
	e := newManager(t, p, func(o *crl.Options) { o.Store = st })
	e.run(t)
	gen := crl.ScopeGeneration(p.active)
	before, _ := e.crl(t, gen, false)

	st.hook = func() {
		require.NoError(t, e.m.Follow(ctx))
		n := e.pub.count()
		e.stepPastCoalescing(t, time.Second)
		require.Eventually(t, func() bool { return e.pub.count() > n }, 5*time.Second, time.Millisecond, "the rebuild Follow started")
	}
	_, err := e.m.Revoke(ctx, crl.Request{Serial: is.Serial, Reason: store.ReasonKeyCompromise})
	require.NoError(t, err)
	built, fl := e.crl(t, gen, false)
	require.Contains(t, serialsOf(fl), is.Serial)
	require.Equal(t, before.Number+1, built.Number)

	// Nothing more to build: no coalescing timer is set, and a republish
	// period later the CRL number has moved by the republication alone.
	time.Sleep(50 * time.Millisecond)
	require.Equal(t, e.timers, e.clk.Waiters(), "no rebuild is pending")
	require.Equal(t, 1.0, metricValue(t, e.reg, "meshca_revocations_total", map[string]string{"reason": "keyCompromise"}))
}

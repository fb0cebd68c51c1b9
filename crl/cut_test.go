package crl_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/crl"
)

// onNumber is the store with a hook that runs once, as soon as a CRL
// number of scope has been allocated: before that CRL's entries are
// listed.
type onNumber struct {
	crl.Backend
	scope string
	hook  func()
}

func (s *onNumber) NextCRLNumber(ctx context.Context, scope string) (store.CRLCut, error) {
	cut, err := s.Backend.NextCRLNumber(ctx, scope)
	if err == nil && scope == s.scope && s.hook != nil {
		h := s.hook
		s.hook = nil
		h()
	}
	return cut, err
}

// TestReplicas_AGreaterCRLNumberNeverListsLess: two replicas build CRLs of
// one generation from one store. Replica A allocates its number; before A
// lists the entries, replica B allocates the next number and builds, and
// then a revocation commits. A relying party takes the CRL with the
// greater number as the newer (RFC 5280 section 5.2.3), so A's CRL (the
// smaller number) must not list the revocation that B's misses. Before
// the cut, A listed whatever was committed when it read the store, and the
// newer-numbered CRL listed less than the older.
func TestReplicas_AGreaterCRLNumberNeverListsLess(t *testing.T) {
	p := newMgrPKI(t)
	ctx := context.Background()
	_, early := p.issue(t, p.active, appID, p.clk.Now().Add(72*time.Hour))
	_, late := p.issue(t, p.active, appID, p.clk.Now().Add(72*time.Hour))
	_, err := p.st.Revoke(ctx, []store.Revocation{{Serial: early.Serial, Kind: store.KindLeaf, Generation: p.active, Known: true, NotAfter: early.NotAfter, RevokedAt: p.clk.Now()}})
	require.NoError(t, err)
	gen := crl.ScopeGeneration(p.active)
	stA := &onNumber{Backend: p.st, scope: gen}
	a := newManager(t, p, func(o *crl.Options) { o.Store = stA })
	b := newManager(t, p)

	// Into the next second, so that neither rebuild waits for the clock
	// (a CRL's thisUpdate follows its predecessor's).
	p.clk.Step(2 * time.Second)
	var hookErr error
	stA.hook = func() {
		if hookErr = b.m.RebuildAll(ctx); hookErr != nil {
			return
		}
		_, hookErr = p.st.Revoke(ctx, []store.Revocation{{Serial: late.Serial, Kind: store.KindLeaf, Generation: p.active, Known: true, NotAfter: late.NotAfter, RevokedAt: p.clk.Now()}})
	}
	require.NoError(t, a.m.RebuildAll(ctx))
	require.NoError(t, hookErr)
	require.Nil(t, stA.hook, "replica A allocated a number of %s", gen)

	pa, la := a.crl(t, gen, false)
	pb, lb := b.crl(t, gen, false)
	require.Less(t, pa.Number, pb.Number, "A allocated first")
	require.Equal(t, []string{early.Serial}, serialsOf(lb), "B built before the revocation of late")
	require.Subset(t, serialsOf(lb), serialsOf(la), "CRL %d lists every serial CRL %d lists", pb.Number, pa.Number)
	require.Equal(t, []string{early.Serial}, serialsOf(la), "A's CRL ends at its cut")
	_, da := a.crl(t, gen, true)
	require.Empty(t, da.RevokedCertificateEntries, "A's delta, from its new base, ends at the cut too")

	// The next CRL of either replica lists it.
	p.clk.Step(2 * time.Second)
	require.NoError(t, a.m.RebuildAll(ctx))
	pa2, la2 := a.crl(t, gen, false)
	require.Greater(t, pa2.Number, pb.Number)
	require.ElementsMatch(t, []string{early.Serial, late.Serial}, serialsOf(la2))
}

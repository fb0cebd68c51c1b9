package crl_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/crl"
)

// TestManager_ARevokedIntermediateRecordedTwiceRevokesTheLeavesOfBoth:
// one certificate recorded as two generations (a pre-issued intermediate
// whose first record was left prepared) is revoked once, under the first
// record; the leaves issued under the second are revoked with it, on this
// manager and on one that starts later. Before, IsRevoked was false for
// them: a client certificate under the second record still authenticated.
func TestManager_ARevokedIntermediateRecordedTwiceRevokesTheLeavesOfBoth(t *testing.T) {
	p := newMgrPKI(t)
	ctx := context.Background()
	retired := p.gens[p.retired()]
	twin, err := p.st.AddGeneration(ctx, store.Generation{CertDER: retired.cert.Raw, Profile: "classical", Source: "file-preissued", CreatedAt: p.clk.Now()})
	require.NoError(t, err)
	p.gens[twin.ID] = retired
	_, leaf := p.issue(t, twin.ID, appID, p.clk.Now().Add(time.Hour))
	_, other := p.issue(t, p.active, appID, p.clk.Now().Add(time.Hour))

	e := newManager(t, p)
	_, err = e.m.Revoke(ctx, crl.Request{Generation: p.retired(), Reason: store.ReasonKeyCompromise})
	require.NoError(t, err)
	revoked, err := e.m.IsRevoked(ctx, leaf.Serial)
	require.NoError(t, err)
	require.True(t, revoked, "a leaf of the second record of the revoked certificate")
	revoked, err = e.m.IsRevoked(ctx, other.Serial)
	require.NoError(t, err)
	require.False(t, revoked, "a leaf of another generation")

	later := newManager(t, p) // loads the revoked set from the store
	revoked, err = later.m.IsRevoked(ctx, leaf.Serial)
	require.NoError(t, err)
	require.True(t, revoked, "after a restart too")
}

package admin

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/ca/store/boltstore"
)

// The status's generation is the default signer's active one, even when
// a signer with its own intermediate activated a newer one; the list
// names each generation's signer lineage.
func TestStoreStatus_GenerationIsTheDefaultSigners(t *testing.T) {
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "meshca.db"))
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	now := time.Now().UTC()
	d, err := st.AddGeneration(ctx, store.Generation{CertDER: []byte("d"), Profile: "classical", Source: "file-minted", CreatedAt: now})
	require.NoError(t, err)
	a, err := st.AddGeneration(ctx, store.Generation{CertDER: []byte("a"), Profile: "classical", Source: "file-minted", Signer: "alpha", CreatedAt: now})
	require.NoError(t, err)
	require.NoError(t, st.ActivateGeneration(ctx, d.ID, now))
	require.NoError(t, st.ActivateGeneration(ctx, a.ID, now))

	s := StoreStatus(ctx, StoreState{TrustDomain: "cluster.local", Generations: st})
	require.True(t, s.Store.Healthy, s.Store.Error)
	require.Equal(t, d.ID, s.Generation)
	require.Len(t, s.Generations, 2)
	require.Equal(t, "", s.Generations[0].Signer)
	require.Equal(t, "alpha", s.Generations[1].Signer)
	require.True(t, s.Generations[0].Active)
	require.True(t, s.Generations[1].Active)
}

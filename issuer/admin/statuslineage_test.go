package admin

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
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

// A revoked generation says so in the status, with its reason and time;
// a leaf revocation under the serial of another generation's intermediate
// does not make that intermediate revoked. Before, a revoked retired
// generation read "retired" with nothing else.
func TestStoreStatus_RevokedGenerationsSaySo(t *testing.T) {
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "meshca.db"))
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	ca := func(serial int64) []byte {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "inter"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		require.NoError(t, err)
		return der
	}
	g1, err := st.AddGeneration(ctx, store.Generation{CertDER: ca(0x1001), Profile: "classical", Source: "file-minted", CreatedAt: now})
	require.NoError(t, err)
	require.NoError(t, st.ActivateGeneration(ctx, g1.ID, now))
	g2, err := st.AddGeneration(ctx, store.Generation{CertDER: ca(0x1002), Profile: "classical", Source: "file-minted", CreatedAt: now})
	require.NoError(t, err)
	require.NoError(t, st.ActivateGeneration(ctx, g2.ID, now))
	_, err = st.Revoke(ctx, []store.Revocation{
		{Serial: "1001", Kind: store.KindIntermediate, Generation: g1.ID, Known: true, Reason: store.ReasonCACompromise, RevokedAt: now},
		{Serial: "1002", Kind: store.KindLeaf, Generation: g2.ID, Reason: store.ReasonKeyCompromise, RevokedAt: now},
	})
	require.NoError(t, err)

	s := StoreStatus(ctx, StoreState{TrustDomain: "cluster.local", Generations: st, Revocations: st})
	require.True(t, s.Store.Healthy, s.Store.Error)
	require.Len(t, s.Generations, 2)
	require.Equal(t, &GenerationRevocation{Seq: 1, Reason: "cACompromise", RevokedAt: now}, s.Generations[0].Revoked)
	require.Equal(t, "retired", s.Generations[0].StateName())
	require.Nil(t, s.Generations[1].Revoked, "a leaf revocation of the same serial is not the intermediate's")
}

package replicatest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/profile"
	"github.com/meshca/meshca/ca/root"
)

// preIssuedDir writes Istio's cacerts files of a classical intermediate
// minted under c's root by a throwaway replica, then points c at them
// (root.file.cacertsDir) with the catalyst profile: meshca must create
// the ML-DSA key of that intermediate itself.
func preIssuedDir(t *testing.T, c *cluster) *authority.Material {
	t.Helper()
	pqAlg := c.cfg.Intermediate.PQAlgorithm
	c.cfg.Intermediate.Profile, c.cfg.Intermediate.PQAlgorithm = profile.Classical, ""
	issuer, ist := c.replica(t, "issuer")
	c.lease.give("issuer")
	mat, err := issuer.m.Start(context.Background())
	require.NoError(t, err)
	gens, err := ist.ListGenerations(context.Background())
	require.NoError(t, err)
	require.Len(t, gens, 1)
	keyPEM, err := os.ReadFile(gens[0].KeyRef)
	require.NoError(t, err)
	dir := filepath.Join(t.TempDir(), "cacerts")
	require.NoError(t, os.MkdirAll(dir, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dir, root.CAKeyFile), keyPEM, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, root.CACertFile), root.EncodePEM(mat.Bundle.Cert), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, root.CertChainFile), root.EncodePEM(mat.Bundle.Chain()...), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, root.RootCertFile), root.EncodePEM(mat.Bundle.Roots...), 0o644))

	// The replicas under test use a fresh database and key directory.
	c.db = pg.CreateDatabase(t)
	c.cfg.KeyStore.Dir = t.TempDir()
	c.cfg.Intermediate.Profile, c.cfg.Intermediate.PQAlgorithm = profile.Catalyst, pqAlg
	f := &c.cfg.Root.File
	f.RootCert, f.RootKey, f.RootPQKey, f.CACertsDir = "", "", "", dir
	require.NoError(t, c.cfg.Validate())
	return mat
}

// mlDSAKeys lists the ML-DSA keys meshca created in the key directory.
func mlDSAKeys(t *testing.T, c *cluster) []string {
	t.Helper()
	es, err := os.ReadDir(c.cfg.KeyStore.Dir)
	require.NoError(t, err)
	var out []string
	for _, e := range es {
		if strings.HasPrefix(e.Name(), "cacerts-") {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestPreIssued_OnlyTheLeaseHolderRecordsIt: with a pre-issued
// intermediate (root.file.cacertsDir) under the catalyst profile, a
// follower that starts first neither records the generation nor creates
// the ML-DSA key (two replicas would each create one, and sign with
// different post-quantum anchors); it waits, and once the holder has
// recorded it, signs with the holder's generation and key.
func TestPreIssued_OnlyTheLeaseHolderRecordsIt(t *testing.T) {
	c := newCluster(t)
	pre := preIssuedDir(t, c)
	a, st := c.replica(t, "a")
	b, _ := c.replica(t, "b")
	c.lease.give("a")

	got := b.startInBackground()
	c.whileFollowing(t, func() {
		require.Zero(t, countGenerations(t, st), "the follower recorded the pre-issued intermediate")
		require.Empty(t, mlDSAKeys(t, c), "the follower created an ML-DSA key")
	})
	matA, err := a.m.Start(context.Background())
	require.NoError(t, err)
	require.True(t, matA.Bundle.Cert.Equal(pre.Bundle.Cert))
	r := c.await(t, got)
	require.NoError(t, r.err)
	require.Equal(t, matA.Generation, r.mat.Generation)
	require.NotNil(t, matA.AltSigner)
	require.NotNil(t, r.mat.AltSigner)
	require.Equal(t, matA.AltSigner.Public(), r.mat.AltSigner.Public(), "both replicas sign with one ML-DSA key")
	require.Len(t, mlDSAKeys(t, c), 1)
	require.Equal(t, 1, countGenerations(t, st))
	require.Equal(t, []uint64{matA.Generation}, activeGenerations(t, st))
}

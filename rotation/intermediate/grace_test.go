package intermediate

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
)

// After a root rotation has removed the old root A (its phase 5 and on:
// the roots in force are B alone), a restart still retains the retired
// generation under A while its leaves are in use plus the grace period:
// it is loaded under the root its stored chain ends at, so its CRL stays
// served (RFC 5280 section 5: its leaves' CRL is the one it signs).
func TestManager_RetainsAGenerationUnderARemovedRootAcrossARestart(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	first, err := f.m.Start(ctx)
	require.NoError(t, err)
	rootA := first.Bundle.Roots[0]
	require.NoError(t, f.st.PutIssuance(ctx, store.Issuance{
		Serial: "0a", Identity: "spiffe://cluster.local/ns/a/sa/b", NotBefore: t0, NotAfter: t0.Add(30 * 24 * time.Hour),
		Fingerprint: "00", Profile: string(first.Profile), Requester: "test", Generation: first.Generation, IssuedAt: t0,
	}))

	// Root B, a file root whose key meshca holds, becomes the only root.
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	rootB, err := root.NewSelfSignedRoot(k, "root B", "meshca", 10*365*24*time.Hour, t0.Add(-time.Hour))
	require.NoError(t, err)
	dir := t.TempDir()
	certB, keyB := filepath.Join(dir, "root-cert.pem"), filepath.Join(dir, "root-key.pem")
	require.NoError(t, os.WriteFile(certB, root.EncodePEM(rootB), 0o644))
	require.NoError(t, keys.WriteKeyFile(keyB, k))
	srcB := &root.FileSource{RootCert: certB, RootKey: keyB, Profile: f.cfg.Intermediate.Profile, Keys: f.km, Clock: f.clk}
	restart := func() *Manager {
		m := New(Options{Config: f.cfg, Keys: f.km, Store: f.st, Root: srcB, Clock: f.clk, Log: f.m.log})
		_, err := m.Start(ctx)
		require.NoError(t, err)
		return m
	}
	f.clk.Step(time.Hour)
	m := restart()
	require.NotEqual(t, first.Generation, m.Active().Generation, "the active intermediate does not chain to B: a new one under B signs")
	require.NoError(t, m.Active().Bundle.Cert.CheckSignatureFrom(rootB))
	require.Len(t, m.Retained(), 1, "generation %d is retired, and retained (loaded from the journal under its own root)", first.Generation)

	f.clk.Step(time.Hour)
	m = restart()
	require.Len(t, m.Retained(), 1, "generation %d's leaf expires in 30 days", first.Generation)
	ret := m.Retained()[0]
	require.Equal(t, first.Generation, ret.Generation)
	require.True(t, ret.Bundle.Cert.Equal(first.Bundle.Cert))
	chain := ret.Bundle.Chain()
	require.True(t, chain[len(chain)-1].Equal(rootA), "loaded under A, the root it was issued by")
	require.Equal(t, first.Bundle.Cert.PublicKey, ret.Signer.Public(), "with its own key, to sign its CRL")

	// Once its leaf expired plus the grace period, a restart drops it.
	f.clk.SetTime(t0.Add(30*24*time.Hour + f.cfg.Intermediate.GracePeriod.Duration + time.Second))
	m = restart()
	require.Empty(t, m.Retained())
}

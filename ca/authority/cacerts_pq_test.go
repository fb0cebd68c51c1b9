package authority_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/pqc"
	"github.com/meshca/meshca/ca/profile"
	"github.com/meshca/meshca/ca/root"
)

// writeCACertsDir writes Istio's four files for a root → intermediate pair
// made with the given keys, and returns the directory.
func writeCACertsDir(t *testing.T, rootKey, interKey root.CAKey, writeKey func(path string) error) string {
	t.Helper()
	now := time.Now()
	rc, err := root.NewRoot(rootKey, "enterprise root", "corp", 24*time.Hour*365, now)
	require.NoError(t, err)
	ic, err := root.Mint(rc, rootKey, interKey, root.IntermediateTemplate{CommonName: "pre-issued", Organization: "corp", Lifetime: 24 * time.Hour * 30}, now)
	require.NoError(t, err)
	dir := filepath.Join(t.TempDir(), "cacerts")
	require.NoError(t, os.Mkdir(dir, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dir, root.CACertFile), root.EncodePEM(ic), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, root.CertChainFile), root.EncodePEM(ic, rc), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, root.RootCertFile), root.EncodePEM(rc), 0o644))
	require.NoError(t, writeKey(filepath.Join(dir, root.CAKeyFile)))
	return dir
}

func cacertsConfig(t *testing.T, p profile.Name, dir string) *config.Config {
	t.Helper()
	return profileConfig(t, t.TempDir(), p, func(c *config.Config) { c.Root.File = config.FileRootConfig{CACertsDir: dir} })
}

func TestLoad_PreIssuedClassicalIntermediateGetsMeshcasOwnMLDSAAnchor(t *testing.T) {
	rk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ik, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	dir := writeCACertsDir(t, root.CAKey{Signer: rk}, root.CAKey{Signer: ik}, func(p string) error { return keys.WriteKeyFile(p, ik) })

	cfg := cacertsConfig(t, profile.Catalyst, dir)
	ca := openCA(t, filepath.Dir(cfg.Store.Path), cfg)
	m := ca.rt.Authority.Material()
	require.True(t, m.PQAnchoredAtIntermediate())
	require.Empty(t, pqExtensions(m.Bundle.Cert), "meshca cannot change a pre-issued certificate")
	c := ca.sign(t, "")
	require.Equal(t, []string{"2.5.29.73", "2.5.29.74"}, extIDs(pqExtensions(c.leaf)))
	requireOpenSSLStrict(t, c.leaf, c.rootC, c.inter)

	// The leaf's alternative signature verifies directly under pq-anchor.pem.
	b, err := os.ReadFile(pqAnchorFile(ca))
	require.NoError(t, err)
	pub, err := pqc.ParsePublicKeyPEM(b)
	require.NoError(t, err)
	spki, err := pqc.MarshalPKIXPublicKey(pub)
	require.NoError(t, err)
	anchor, err := pqc.AnchorFromPublicKeyInfo("pq-anchor.pem", spki)
	require.NoError(t, err)
	require.NoError(t, pqc.VerifyChain([]*x509.Certificate{c.leaf, c.inter, c.rootC}, anchor))
	require.NoError(t, pqc.VerifyAltSignature(c.leaf, spki))

	// A restart keeps the same generation and ML-DSA key.
	gens, err := ca.rt.Store.ListGenerations(context.Background())
	require.NoError(t, err)
	require.Len(t, gens, 1)
	require.NotEmpty(t, gens[0].AltKeyRef)
	fi, err := os.Stat(gens[0].AltKeyRef)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	require.NoError(t, ca.rt.Close())
	again := openCA(t, ca.dir, cfg)
	require.Equal(t, m.Generation, again.rt.Authority.Material().Generation)
	require.Equal(t, m.PQAnchorsPEM(), again.rt.Authority.Material().PQAnchorsPEM())
}

func TestLoad_PreIssuedMLDSAIntermediateVerifiesWithPQC(t *testing.T) {
	rootPQ, err := pqc.GenerateKey("ML-DSA-65", nil)
	require.NoError(t, err)
	interPQ, err := pqc.GenerateKey("ML-DSA-65", nil)
	require.NoError(t, err)
	dir := writeCACertsDir(t, root.CAKey{Signer: rootPQ}, root.CAKey{Signer: interPQ},
		func(p string) error { return keys.WritePQKeyFile(p, interPQ.(keys.PQSigner)) })

	ca := openCA(t, t.TempDir(), cacertsConfig(t, profile.MLDSA, dir))
	m := ca.rt.Authority.Material()
	require.False(t, m.PQAnchoredAtIntermediate())
	c := ca.sign(t, "")
	require.Equal(t, "mldsa", c.res.Record.Profile)
	require.NoError(t, pqc.VerifyChain([]*x509.Certificate{c.leaf, c.inter, c.rootC}, m.PQAnchors()...))

	_, err = openCAErr(t, cacertsConfig(t, profile.Catalyst, dir))
	require.ErrorContains(t, err, "ca-cert.pem: is a ML-DSA-65 root; intermediate.profile catalyst needs a classical root")
}

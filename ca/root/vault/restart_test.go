package vault_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/root/vault"
	"github.com/meshca/meshca/ca/store/boltstore"

	"github.com/meshca/meshca/test/logbuf"
)

func vaultCAConfig(t *testing.T, vcfg config.VaultConfig, dir string) *config.Config {
	t.Helper()
	cfg := &config.Config{
		Root:     config.RootConfig{Source: "vault", Vault: vcfg},
		KeyStore: config.Defaults(dir).KeyStore,
		Store:    config.Defaults(dir).Store,
	}
	cfg.Init()
	require.NoError(t, cfg.Validate())
	return cfg
}

// rootSourceUp is meshca_root_source_up{source="vault"} in reg, or -1.
func rootSourceUp(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == "meshca_root_source_up" {
			require.Len(t, mf.GetMetric(), 1)
			m := mf.GetMetric()[0]
			require.Equal(t, "source", m.GetLabel()[0].GetName())
			require.Equal(t, vault.SourceName, m.GetLabel()[0].GetValue())
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

// signAndVerify signs a workload certificate through rt and checks with
// openssl and crypto/x509 that it verifies to vaultRoot.
func signAndVerify(t *testing.T, rt *authority.Runtime, vaultRoot *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	id, _ := url.Parse("spiffe://cluster.local/ns/default/sa/app")
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id}}, key)
	require.NoError(t, err)
	res, err := rt.Authority.Sign(context.Background(), authority.Request{
		CSR: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}), Identity: id,
	})
	require.NoError(t, err)
	require.Len(t, res.Chain, 3, "leaf, meshca's intermediate, Vault's root")
	inters, err := root.ParseCertificates([]byte(res.Chain[1]))
	require.NoError(t, err)
	require.Len(t, inters, 1)
	rootsPEM, err := root.ParseCertificates([]byte(res.Chain[2]))
	require.NoError(t, err)
	require.Len(t, rootsPEM, 1)
	require.True(t, rootsPEM[0].Equal(vaultRoot), "the chain ends at Vault's root")
	leaf, err := res.Leaf()
	require.NoError(t, err)
	vault.OpenSSLVerify(t, vaultRoot, inters[0], leaf)
	pool, ipool := x509.NewCertPool(), x509.NewCertPool()
	pool.AddCert(vaultRoot)
	ipool.AddCert(inters[0])
	_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: ipool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	require.NoError(t, err)
}

// TestOpen_RestartWhileVaultSealedSignsWithStoredGenerationUntilVaultIsBack
// restarts meshca during a Vault outage: it starts with the stored
// Vault-signed generation, keeps the source down, and completes Vault's
// checks once Vault is unsealed.
func TestOpen_RestartWhileVaultSealedSignsWithStoredGenerationUntilVaultIsBack(t *testing.T) {
	vcfg, vaultRoot := vault.NewTestPKI(t, "restart-sealed")
	cfg := vaultCAConfig(t, vcfg, t.TempDir())
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	rt, err := openCA(context.Background(), cfg, quiet, prometheus.NewRegistry())
	require.NoError(t, err)
	first := rt.Authority.Material()
	require.EqualValues(t, 1, first.Generation)
	require.True(t, vaultOf(t, rt).Validated())
	require.NoError(t, rt.Close())

	unseal := vault.SealTestVault(t)
	var logs logbuf.Buffer
	reg := prometheus.NewRegistry()
	rt, mgr, err := openCAManager(context.Background(), cfg, slog.New(slog.NewTextHandler(&logs, nil)), reg)
	require.NoError(t, err)
	defer rt.Close()

	m := rt.Authority.Material()
	require.Equal(t, first.Generation, m.Generation)
	require.True(t, m.Bundle.Cert.Equal(first.Bundle.Cert))
	require.Len(t, m.Bundle.Roots, 1)
	require.True(t, m.Bundle.Roots[0].Equal(vaultRoot), "the root comes from the stored chain")
	gens, err := rt.Store.ListGenerations(context.Background())
	require.NoError(t, err)
	require.Len(t, gens, 1, "nothing is minted while Vault is down")
	signAndVerify(t, rt, vaultRoot)

	require.False(t, vaultOf(t, rt).Validated())
	require.False(t, vaultOf(t, rt).Up())
	require.Equal(t, 0.0, rootSourceUp(t, reg))
	require.Empty(t, vaultOf(t, rt).CurrentRoots())
	require.Nil(t, vaultOf(t, rt).CurrentCRL())
	_, err = vaultOf(t, rt).Roots(context.Background())
	require.ErrorIs(t, err, vault.ErrUnavailable)
	require.Contains(t, logs.String(), "Vault is unavailable at start-up")
	require.Contains(t, logs.String(), "the root source is unavailable; signing with the stored intermediate it signed")

	// A rotation while Vault is down fails and the stored generation stays active.
	_, err = mgr.RotateNow(context.Background(), "test")
	require.ErrorIs(t, err, vault.ErrUnavailable)
	require.Equal(t, first.Generation, mgr.Active().Generation)
	gens, err = rt.Store.ListGenerations(context.Background())
	require.NoError(t, err)
	require.Len(t, gens, 1, "nothing is minted while Vault is down")

	unseal()
	require.Eventually(t, func() bool { return vaultOf(t, rt).Validated() && rootSourceUp(t, reg) == 1 },
		30*time.Second, 10*time.Millisecond, "the source did not validate within 30s of the unseal")
	require.True(t, vaultOf(t, rt).Up())
	require.Len(t, vaultOf(t, rt).CurrentRoots(), 1)
	require.True(t, vaultOf(t, rt).CurrentRoots()[0].Equal(vaultRoot))
	require.NotNil(t, vaultOf(t, rt).CurrentCRL())
	require.Contains(t, logs.String(), "vault root source validated after a start-up outage")
	require.NotContains(t, logs.String(), "no longer matches")
	require.Equal(t, first.Generation, rt.Authority.Material().Generation)
	signAndVerify(t, rt, vaultRoot)
}

// TestOpen_VaultSealedWithFreshStoreFailsWithNothingToSignWith: without a
// stored Vault-signed generation there is nothing to fall back on.
func TestOpen_VaultSealedWithFreshStoreFailsWithNothingToSignWith(t *testing.T) {
	vcfg, _ := vault.NewTestPKI(t, "fresh-sealed")
	dir := t.TempDir()
	cfg := vaultCAConfig(t, vcfg, dir)
	vault.SealTestVault(t)
	_, err := openCA(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	require.ErrorContains(t, err, "root.vault.address: cannot use Vault at "+vcfg.Address)
	require.ErrorContains(t, err, "Vault is sealed")
	require.ErrorContains(t, err, `there is no stored intermediate to fall back on (the store holds no active CA generation from root source "vault")`)
	require.ErrorIs(t, err, vault.ErrUnavailable)

	// Nothing was minted: no generation, no key.
	st, err := boltstore.Open(cfg.Store.Path)
	require.NoError(t, err)
	defer st.Close()
	gens, err := st.ListGenerations(context.Background())
	require.NoError(t, err)
	require.Empty(t, gens)
	var created []string
	require.NoError(t, filepath.WalkDir(cfg.KeyStore.Dir, func(p string, d fs.DirEntry, err error) error {
		if p == cfg.KeyStore.Dir && errors.Is(err, fs.ErrNotExist) {
			return nil // the key store was never even created
		}
		if err == nil && !d.IsDir() {
			created = append(created, p)
		}
		return err
	}))
	require.Empty(t, created, "no key is created in the key store")
}

// TestOpen_VaultBackWithAnotherRootLogsErrorAndKeepsTheStoredRoot: after
// an outage Vault serves a different root; meshca says so and does not
// switch on its own.
func TestOpen_VaultBackWithAnotherRootLogsErrorAndKeepsTheStoredRoot(t *testing.T) {
	vcfg, vaultRoot := vault.NewTestPKI(t, "root-a")
	other, otherRoot := vault.NewTestPKI(t, "root-b")
	dir := t.TempDir()
	rt, err := openCA(context.Background(), vaultCAConfig(t, vcfg, dir), slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	require.NoError(t, err)
	first := rt.Authority.Material()
	require.NoError(t, rt.Close())

	unseal := vault.SealTestVault(t)
	var logs logbuf.Buffer
	reg := prometheus.NewRegistry()
	rt, err = openCA(context.Background(), vaultCAConfig(t, other, dir), slog.New(slog.NewTextHandler(&logs, nil)), reg)
	require.NoError(t, err)
	defer rt.Close()
	require.Equal(t, first.Generation, rt.Authority.Material().Generation)
	require.Equal(t, 0.0, rootSourceUp(t, reg))

	unseal()
	require.Eventually(t, func() bool { return vaultOf(t, rt).Validated() && rootSourceUp(t, reg) == 1 },
		30*time.Second, 10*time.Millisecond, "the source did not validate within 30s of the unseal")
	require.Contains(t, logs.String(), `level=ERROR msg="Vault's root no longer matches the root of the stored intermediate`)
	require.Contains(t, logs.String(), "stored_root_sha256="+vault.Fingerprint(vaultRoot))
	require.Contains(t, logs.String(), "vault_root_sha256="+vault.Fingerprint(otherRoot))
	m := rt.Authority.Material()
	require.Equal(t, first.Generation, m.Generation)
	require.True(t, m.Bundle.Roots[0].Equal(vaultRoot), "meshca keeps signing under the stored root")
	signAndVerify(t, rt, vaultRoot)
}

// vaultOf is the Vault root source of rt.
func vaultOf(t *testing.T, rt *authority.Runtime) *vault.Source {
	t.Helper()
	src, ok := rt.Root.(*vault.Source)
	require.True(t, ok, "the root source is %T, not Vault", rt.Root)
	return src
}

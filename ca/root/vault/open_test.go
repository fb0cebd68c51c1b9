package vault_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/root/vault"
)

// TestOpen_VaultRootSignsMeshcaIntermediateAndWorkloadsVerifyWithOpenSSL
// opens the CA exactly as meshca serve does with root.source vault.
func TestOpen_VaultRootSignsMeshcaIntermediateAndWorkloadsVerifyWithOpenSSL(t *testing.T) {
	vcfg, vaultRoot := vault.NewTestPKI(t, "open")
	dir := t.TempDir()
	cfg := &config.Config{
		Root:     config.RootConfig{Source: "vault", Vault: vcfg},
		KeyStore: config.Defaults(dir).KeyStore,
		Store:    config.Defaults(dir).Store,
	}
	cfg.Init()
	require.NoError(t, cfg.Validate())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rt, err := openCA(context.Background(), cfg, log, prometheus.NewRegistry())
	require.NoError(t, err)

	m := rt.Authority.Material()
	require.NoError(t, m.Bundle.Cert.CheckSignatureFrom(vaultRoot), "the intermediate is signed by Vault's root")
	require.True(t, m.Bundle.Roots[0].Equal(vaultRoot))
	gens, err := rt.Store.ListGenerations(context.Background())
	require.NoError(t, err)
	require.Len(t, gens, 1)
	require.Equal(t, root.KindVault, gens[0].Source)

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	id, _ := url.Parse("spiffe://cluster.local/ns/default/sa/app")
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id}}, key)
	res, err := rt.Authority.Sign(context.Background(), authority.Request{
		CSR: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}), Identity: id,
	})
	require.NoError(t, err)
	tmp := t.TempDir()
	write := func(n string, b []byte) string {
		p := filepath.Join(tmp, n)
		require.NoError(t, os.WriteFile(p, b, 0o644))
		return p
	}
	out, err := exec.Command("openssl", "verify", "-x509_strict",
		"-CAfile", write("root.pem", root.EncodePEM(vaultRoot)),
		"-untrusted", write("inter.pem", []byte(res.Chain[1])),
		write("leaf.pem", []byte(res.Chain[0]))).CombinedOutput()
	require.NoError(t, err, string(out))
	require.Equal(t, filepath.Join(tmp, "leaf.pem")+": OK\n", string(out))
	require.NoError(t, rt.Close())

	// A restart reuses the Vault-signed generation instead of asking again.
	rt, err = openCA(context.Background(), cfg, log, prometheus.NewRegistry())
	require.NoError(t, err)
	defer rt.Close()
	require.Equal(t, gens[0].ID, rt.Authority.Material().Generation)
	gens, err = rt.Store.ListGenerations(context.Background())
	require.NoError(t, err)
	require.Len(t, gens, 1)
}

// TestManager_VaultRotationMintsSecondGenerationWithoutSigningGap has the
// intermediate rotation manager rotate: Vault signs a second intermediate
// for a new key while the first keeps signing until the swap.
func TestManager_VaultRotationMintsSecondGenerationWithoutSigningGap(t *testing.T) {
	vcfg, vaultRoot := vault.NewTestPKI(t, "rotate")
	vcfg.LifetimeTolerance.Duration = 2 * time.Hour
	dir := t.TempDir()
	cfg := &config.Config{
		Root:     config.RootConfig{Source: "vault", Vault: vcfg},
		KeyStore: config.Defaults(dir).KeyStore,
		Store:    config.Defaults(dir).Store,
	}
	cfg.Intermediate.Lifetime.Duration = 2 * time.Hour
	cfg.Init()
	require.NoError(t, cfg.Validate())
	rt, mgr, err := openCAManager(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	require.NoError(t, err)
	defer rt.Close()
	first := rt.Authority.Material()

	sign := func() *x509.Certificate {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		id, _ := url.Parse("spiffe://cluster.local/ns/default/sa/app")
		csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id}}, key)
		res, err := rt.Authority.Sign(context.Background(), authority.Request{
			CSR: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}), Identity: id,
		})
		require.NoError(t, err)
		leaf, err := res.Leaf()
		require.NoError(t, err)
		return leaf
	}

	// The rotation manager asks Vault for a successor, verifies and activates it.
	next, err := mgr.RotateNow(context.Background(), "test")
	require.NoError(t, err)
	require.NotEqual(t, first.Generation, next.Generation)
	require.False(t, next.Bundle.Cert.Equal(first.Bundle.Cert), "the chain changes")
	require.NoError(t, next.Bundle.Cert.CheckSignatureFrom(vaultRoot))

	// No gap: the first generation signs until the atomic swap, the second after it.
	require.NoError(t, sign().CheckSignatureFrom(first.Bundle.Cert))
	rt.Authority.SetMaterial(next)
	require.NoError(t, sign().CheckSignatureFrom(next.Bundle.Cert))
	gens, err := rt.Store.ListGenerations(context.Background())
	require.NoError(t, err)
	require.Len(t, gens, 2)
	require.False(t, gens[0].Active())
	require.True(t, gens[1].Active())
}

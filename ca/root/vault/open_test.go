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
	rt, err := authority.Open(context.Background(), cfg, log, prometheus.NewRegistry())
	require.NoError(t, err)

	m := rt.Authority.Material()
	require.NoError(t, m.Bundle.Cert.CheckSignatureFrom(vaultRoot), "the intermediate is signed by Vault's root")
	require.True(t, m.Bundle.Roots[0].Equal(vaultRoot))
	gens, err := rt.Store.ListGenerations(context.Background())
	require.NoError(t, err)
	require.Len(t, gens, 1)
	require.Equal(t, vault.SourceVault, gens[0].Source)

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
	rt, err = authority.Open(context.Background(), cfg, log, prometheus.NewRegistry())
	require.NoError(t, err)
	defer rt.Close()
	require.Equal(t, gens[0].ID, rt.Authority.Material().Generation)
	gens, err = rt.Store.ListGenerations(context.Background())
	require.NoError(t, err)
	require.Len(t, gens, 1)
}

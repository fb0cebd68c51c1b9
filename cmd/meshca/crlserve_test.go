package main

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.step.sm/crypto/pemutil"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/profile"
)

// serve's crl.rootCRL source keeps the CRL it takes in the store: after a
// restart with an older CRL in crl.rootCRL.file (a rollback), ca-crl.pem
// still carries the newer one.
func TestCRLManager_TheRootCRLTakenIsKeptAcrossARestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	_, err := runMeshca(t, "init", "--dir", dir, "--profile", "classical")
	require.NoError(t, err)
	plugIn := filepath.Join(t.TempDir(), "cacerts")
	_, err = runMeshca(t, "cacerts", "--dir", dir, "--out", plugIn)
	require.NoError(t, err)
	rootCert, err := pemutil.ReadCertificate(filepath.Join(dir, config.RootCertFile))
	require.NoError(t, err)
	k, err := pemutil.Read(filepath.Join(dir, config.RootKeyFile))
	require.NoError(t, err)
	rootKey := k.(crypto.Signer)
	crlFile := filepath.Join(t.TempDir(), "root.crl")
	writeRootCRL := func(n int64) {
		der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
			Number: big.NewInt(n), ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(time.Hour),
		}, rootCert, rootKey)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(crlFile, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o600))
	}

	cfg := config.Defaults(t.TempDir())
	cfg.Intermediate.Profile, cfg.Issuance.Profile = profile.Classical, profile.Classical
	cfg.Intermediate.PQAlgorithm = ""
	cfg.Root.File = config.FileRootConfig{CACertsDir: plugIn}
	cfg.CRL.RootCRL.File = crlFile
	log := slog.New(slog.DiscardHandler)
	rootCRLIn := func() *big.Int {
		t.Helper()
		ctx := t.Context()
		rt, _, err := openCA(ctx, cfg, log, nil)
		require.NoError(t, err)
		defer rt.Close()
		m, err := newCRLManager(ctx, cfg, rt, nil, log, prometheus.NewRegistry())
		require.NoError(t, err)
		var number *big.Int
		for rest := m.CACRLPEM(); ; {
			var b *pem.Block
			if b, rest = pem.Decode(rest); b == nil {
				break
			}
			c, err := x509.ParseRevocationList(b.Bytes)
			require.NoError(t, err)
			if c.CheckSignatureFrom(rootCert) == nil {
				number = c.Number
			}
		}
		require.NotNil(t, number, "ca-crl.pem holds the root's CRL")
		return number
	}

	writeRootCRL(6)
	require.Equal(t, int64(6), rootCRLIn().Int64())
	writeRootCRL(4)
	require.Equal(t, int64(6), rootCRLIn().Int64(), "after a restart, the CRL kept, not the older one in the file")
	writeRootCRL(7)
	require.Equal(t, int64(7), rootCRLIn().Int64())
}

package intermediate

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/test/hsmenv"
)

// pkcs11Label is the token label behind a generation's key reference.
func pkcs11Label(t *testing.T, ref string) string {
	t.Helper()
	label, ok := strings.CutPrefix(ref, "pkcs11:id=")
	require.True(t, ok, "a token key reference: %s", ref)
	label, _, ok = strings.Cut(label, ";object=")
	require.True(t, ok, ref)
	return label
}

// requireSignsFor checks that mat's classical key signs a digest that its
// certificate's public key verifies.
func requireSignsFor(t *testing.T, mat *authority.Material) {
	t.Helper()
	d := sha256.Sum256([]byte("a CRL's TBSCertList"))
	sig, err := mat.Signer.Sign(rand.Reader, d[:], crypto.SHA256)
	require.NoError(t, err)
	require.NoError(t, mat.Bundle.Cert.CheckSignature(x509.ECDSAWithSHA256, []byte("a CRL's TBSCertList"), sig))
}

// Intermediate rotation on a PKCS#11 key store: every generation, of
// every signer lineage, gets a new key object in the token under its own
// label; a rotation never replaces the active (or any earlier) key, the
// retired generation's key still signs (its CRL), and a restart on the
// same token signs with the active one. The catalyst ML-DSA keys are one
// 0600 file per generation in keyStore.dir.
func TestManager_PKCS11RotationCreatesANewTokenKeyPerGeneration(t *testing.T) {
	hsm := hsmenv.New(t)
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.KeyStore.Type, cfg.KeyStore.URI = "pkcs11", hsm.URI
	require.NoError(t, cfg.Validate())
	createRoot(t, cfg)
	clk := clocktesting.NewFakeClock(t0)
	p := openParts(t, cfg, clk)
	closed := false
	t.Cleanup(func() {
		if !closed {
			p.close()
		}
	})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := New(Options{Config: cfg, Keys: p.km, Store: p.st, Root: p.src, Clock: clk, Log: quiet})
	ctx := context.Background()

	first, err := m.Start(ctx)
	require.NoError(t, err)
	firstLabel := pkcs11Label(t, generation(t, p.st, first.Generation).KeyRef)
	labels, err := hsm.PrivateKeyLabels()
	require.NoError(t, err)
	require.Equal(t, []string{firstLabel}, labels)

	// Two rotations at the same instant (the clock does not move): each
	// generation still gets its own key.
	second, err := m.RotateNow(ctx, "test")
	require.NoError(t, err)
	third, err := m.RotateNow(ctx, "test")
	require.NoError(t, err)
	sm := New(Options{Config: cfg, Keys: p.km, Store: p.st, Root: p.src, Clock: clk, Signer: "alpha", Log: quiet})
	alpha, err := sm.Start(ctx)
	require.NoError(t, err)

	want := []string{firstLabel}
	for _, g := range []uint64{second.Generation, third.Generation, alpha.Generation} {
		want = append(want, pkcs11Label(t, generation(t, p.st, g).KeyRef))
	}
	require.Contains(t, want[3], "intermediate-signer-alpha-", "the alpha lineage's key carries its name")
	labels, err = hsm.PrivateKeyLabels()
	require.NoError(t, err)
	sort.Strings(labels)
	sorted := append([]string(nil), want...)
	sort.Strings(sorted)
	require.Equal(t, sorted, labels, "one token key per generation, none replaced")
	for _, l := range want {
		obj, err := hsm.PrivateKey(l)
		require.NoError(t, err)
		require.True(t, obj.Local && obj.NeverExtractable && !obj.Extractable, "%s generated in the token, never extractable", l)
	}
	pqFiles, err := filepath.Glob(filepath.Join(cfg.KeyStore.Dir, "*-ml-dsa-65.key"))
	require.NoError(t, err)
	require.Len(t, pqFiles, 4, "one ML-DSA key file per generation")
	require.Equal(t, 4, keyFiles(t, cfg), "and no other key file")

	require.Equal(t, map[uint64]store.GenerationState{
		first.Generation: store.StateRetired, second.Generation: store.StateRetired,
		third.Generation: store.StateActive, alpha.Generation: store.StateActive,
	}, lineageStates(t, p.st))
	// The retired generations' keys are untouched: they still sign for
	// their certificates (their CRLs are signed with them).
	retained := m.retainedMaterial()
	require.Len(t, retained, 2)
	for _, r := range retained {
		requireSignsFor(t, r)
	}
	requireSignsFor(t, third)

	// A restart on the same token signs with the active generation's key.
	p.close()
	closed = true
	p2 := openParts(t, cfg, clk)
	t.Cleanup(p2.close)
	again, err := New(Options{Config: cfg, Keys: p2.km, Store: p2.st, Root: p2.src, Clock: clk, Log: quiet}).Start(ctx)
	require.NoError(t, err)
	require.Equal(t, third.Generation, again.Generation)
	requireSignsFor(t, again)
	_, isFile := keys.FilePath(generation(t, p2.st, again.Generation).KeyRef)
	require.False(t, isFile)
}

// The root's key can live in the token too (root.file.rootKey is the key's
// pkcs11: URI): meshca mints the intermediate with it, and both keys are
// token objects.
func TestManager_PKCS11RootKeyInTheTokenMintsTheIntermediate(t *testing.T) {
	hsm := hsmenv.New(t)
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.KeyStore.Type, cfg.KeyStore.URI = "pkcs11", hsm.URI
	cfg.Intermediate.Profile, cfg.Issuance.Profile, cfg.Intermediate.PQAlgorithm = "classical", "classical", ""
	cfg.Root.File.RootPQKey = ""
	require.NoError(t, cfg.Validate())
	clk := clocktesting.NewFakeClock(t0)
	p := openParts(t, cfg, clk)
	t.Cleanup(p.close)

	rootKey, rootRef, err := p.km.Create("enterprise-root", keys.ECP384)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "root in the token"},
		NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(10 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, rootKey.Public(), rootKey)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(cfg.Root.File.RootCert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
	cfg.Root.File.RootKey = rootRef
	p.src.RootKey = rootRef

	m := New(Options{Config: cfg, Keys: p.km, Store: p.st, Root: p.src, Clock: clk, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	mat, err := m.Start(context.Background())
	require.NoError(t, err)
	rootCert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	require.NoError(t, mat.Bundle.Cert.CheckSignatureFrom(rootCert), "the intermediate is signed by the root key in the token")
	requireSignsFor(t, mat)
	labels, err := hsm.PrivateKeyLabels()
	require.NoError(t, err)
	sort.Strings(labels)
	require.Equal(t, []string{"enterprise-root", pkcs11Label(t, generation(t, p.st, mat.Generation).KeyRef)}, labels)
	es, err := os.ReadDir(cfg.KeyStore.Dir)
	if err == nil {
		require.Empty(t, es, "classical: no key file at all")
	}
}

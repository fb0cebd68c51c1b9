package cacerts_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/trustbundle/cacerts"
)

var now = time.Date(2026, time.May, 1, 12, 0, 0, 0, time.UTC)

type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newRoot(t *testing.T, name string) ca {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	c, err := root.NewSelfSignedRoot(k, name, "meshca-test", 10*365*24*time.Hour, now)
	require.NoError(t, err)
	return ca{c, k}
}

func mint(t *testing.T, parent ca) ca {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	c, err := root.MintIntermediate(parent.cert, parent.key, k.Public(), root.IntermediateTemplate{CommonName: "inter", Organization: "meshca", Lifetime: 365 * 24 * time.Hour}, now)
	require.NoError(t, err)
	return ca{c, k}
}

func parse(t *testing.T, b []byte) []*x509.Certificate {
	t.Helper()
	certs, err := root.ParseCertificates(b)
	require.NoError(t, err)
	return certs
}

func requireCerts(t *testing.T, want []*x509.Certificate, b []byte) {
	t.Helper()
	got := parse(t, b)
	require.Len(t, got, len(want))
	for i := range want {
		require.True(t, want[i].Equal(got[i]), "certificate %d", i)
	}
}

func TestFiles_HoldsIstiosKeysInOrder(t *testing.T) {
	r := newRoot(t, "root")
	in := mint(t, r)
	b := &root.Bundle{Cert: in.cert, Roots: []*x509.Certificate{r.cert}}
	files, err := cacerts.Files(b, in.key, nil)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"ca-cert.pem", "ca-key.pem", "cert-chain.pem", "root-cert.pem"}, keysOf(files))

	requireCerts(t, []*x509.Certificate{in.cert}, files[cacerts.KeyCACert])
	requireCerts(t, []*x509.Certificate{in.cert, r.cert}, files[cacerts.KeyCertChain])
	requireCerts(t, []*x509.Certificate{r.cert}, files[cacerts.KeyRootCert])

	block, rest := pem.Decode(files[cacerts.KeyCAKey])
	require.NotNil(t, block)
	require.Empty(t, rest)
	require.Equal(t, "PRIVATE KEY", block.Type, "PKCS#8")
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	require.NoError(t, err)
	require.True(t, key.(*ecdsa.PrivateKey).PublicKey.Equal(in.cert.PublicKey), "ca-key.pem must match ca-cert.pem")
}

func TestFiles_RootCertHoldsEveryRootAndCRLsWhenGiven(t *testing.T) {
	old, next := newRoot(t, "old"), newRoot(t, "next")
	in := mint(t, old)
	b := &root.Bundle{Cert: in.cert, Roots: []*x509.Certificate{old.cert, next.cert}}
	crl := []byte("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n")
	files, err := cacerts.Files(b, in.key, crl)
	require.NoError(t, err)
	requireCerts(t, []*x509.Certificate{old.cert, next.cert}, files[cacerts.KeyRootCert])
	requireCerts(t, []*x509.Certificate{in.cert, old.cert}, files[cacerts.KeyCertChain])
	require.Equal(t, crl, files[cacerts.KeyCRL])
}

func keysOf(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestWriteDir_KeyIs0600AndTheRest0644(t *testing.T) {
	r := newRoot(t, "root")
	in := mint(t, r)
	files, err := cacerts.Files(&root.Bundle{Cert: in.cert, Roots: []*x509.Certificate{r.cert}}, in.key, []byte("crl"))
	require.NoError(t, err)
	dir := filepath.Join(t.TempDir(), "cacerts")

	// A stale, world-readable key from an earlier writer is replaced, mode included.
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, cacerts.KeyCAKey), []byte("stale"), 0o644))

	removed, err := cacerts.WriteDir(dir, files)
	require.NoError(t, err)
	require.Empty(t, removed)
	for name, content := range files {
		path := filepath.Join(dir, name)
		fi, err := os.Stat(path)
		require.NoError(t, err)
		want := os.FileMode(0o644)
		if name == cacerts.KeyCAKey {
			want = 0o600
		}
		require.Equal(t, want, fi.Mode().Perm(), name)
		got, err := os.ReadFile(path)
		require.NoError(t, err)
		require.Equal(t, content, got, name)
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, len(files), "no temporary files are left behind")

	// What WriteDir wrote loads back as a pre-issued intermediate.
	km, err := keys.Open(context.Background(), keys.Config{Type: "softkms", Dir: t.TempDir()})
	require.NoError(t, err)
	defer km.Close()
	b, _, err := root.LoadCACertsDir(dir, km.Signer, now)
	require.NoError(t, err)
	require.True(t, b.Cert.Equal(in.cert))
}

// A folder written again without a CRL (meshca cacerts --out DIR after an
// earlier --crl) loses its ca-crl.pem: a Secret made from the folder would
// otherwise carry a CRL of the earlier export, perhaps of another
// intermediate (istiod refuses the Secret) or past its nextUpdate (Istio
// fails every handshake). Files that are not Istio's are left alone.
func TestWriteDir_RemovesAStaleCRL(t *testing.T) {
	r := newRoot(t, "root")
	in := mint(t, r)
	b := &root.Bundle{Cert: in.cert, Roots: []*x509.Certificate{r.cert}}
	dir := filepath.Join(t.TempDir(), "cacerts")
	withCRL, err := cacerts.Files(b, in.key, []byte("crl"))
	require.NoError(t, err)
	_, err = cacerts.WriteDir(dir, withCRL)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "README"), []byte("mine"), 0o644))

	without, err := cacerts.Files(b, in.key, nil)
	require.NoError(t, err)
	removed, err := cacerts.WriteDir(dir, without)
	require.NoError(t, err)
	require.Equal(t, []string{cacerts.KeyCRL}, removed)
	_, err = os.Stat(filepath.Join(dir, cacerts.KeyCRL))
	require.ErrorIs(t, err, os.ErrNotExist)
	_, err = os.Stat(filepath.Join(dir, "README"))
	require.NoError(t, err, "not Istio's: left alone")
	removed, err = cacerts.WriteDir(dir, without)
	require.NoError(t, err)
	require.Empty(t, removed, "nothing stale the second time")
}

func TestMergeRoots_RotationSequenceKeepsTheByteRule(t *testing.T) {
	a, b := newRoot(t, "A"), newRoot(t, "B")
	phase0 := root.EncodePEM(a.cert)

	// A → A+B: the new bytes start with the old bytes.
	phase1, err := cacerts.MergeRoots(phase0, []*x509.Certificate{a.cert, b.cert})
	require.NoError(t, err)
	require.True(t, bytes.HasPrefix(phase1, phase0))
	requireCerts(t, []*x509.Certificate{a.cert, b.cert}, phase1)

	// Unchanged: byte for byte the same, whatever order want lists the roots in.
	for _, want := range [][]*x509.Certificate{{a.cert, b.cert}, {b.cert, a.cert}} {
		same, err := cacerts.MergeRoots(phase1, want)
		require.NoError(t, err)
		require.Equal(t, phase1, same)
	}

	// A+B → B: the new bytes are a substring of the old bytes.
	phase2, err := cacerts.MergeRoots(phase1, []*x509.Certificate{b.cert})
	require.NoError(t, err)
	require.True(t, bytes.Contains(phase1, phase2))
	requireCerts(t, []*x509.Certificate{b.cert}, phase2)

	// A+B → A works the same way.
	onlyA, err := cacerts.MergeRoots(phase1, []*x509.Certificate{a.cert})
	require.NoError(t, err)
	require.True(t, bytes.Contains(phase1, onlyA))
	requireCerts(t, []*x509.Certificate{a.cert}, onlyA)
}

func TestMergeRoots_KeepsTheByteRuleForFilesMeshcaDidNotWrite(t *testing.T) {
	a, b, c := newRoot(t, "A"), newRoot(t, "B"), newRoot(t, "C")
	pa, pb := string(root.EncodePEM(a.cert)), string(root.EncodePEM(b.cert))
	olds := map[string]string{
		"openssl -subject output": "subject=CN=A, O=meshca-test\n" + pa,
		"blank lines":             pa + "\n\n" + pb + "\n",
		"no final newline":        strings.TrimSuffix(pa+pb, "\n"),
		"CRLF line endings":       strings.ReplaceAll(pa+pb, "\n", "\r\n"),
		"leading whitespace":      "\n  \n" + pa + pb,
	}
	for name, old := range olds {
		t.Run(name, func(t *testing.T) {
			oldCerts := parse(t, []byte(old))

			same, err := cacerts.MergeRoots([]byte(old), oldCerts)
			require.NoError(t, err)
			require.Equal(t, old, string(same), "unchanged roots keep the file byte for byte")

			added, err := cacerts.MergeRoots([]byte(old), append(oldCerts, c.cert))
			require.NoError(t, err)
			require.True(t, strings.HasPrefix(string(added), old), "adding a root appends after the old bytes")
			requireCerts(t, append(oldCerts, c.cert), added)

			if len(oldCerts) == 2 {
				for _, keep := range oldCerts {
					removed, err := cacerts.MergeRoots([]byte(old), []*x509.Certificate{keep})
					require.NoError(t, err)
					require.True(t, strings.Contains(old, string(removed)), "removing a root leaves a substring of the old bytes")
					requireCerts(t, []*x509.Certificate{keep}, removed)
				}
			}
		})
	}
}

func TestMergeRoots_FromNothing(t *testing.T) {
	a, b := newRoot(t, "A"), newRoot(t, "B")
	for _, old := range [][]byte{nil, []byte("  \n")} {
		got, err := cacerts.MergeRoots(old, []*x509.Certificate{a.cert, b.cert})
		require.NoError(t, err)
		require.Equal(t, root.EncodePEM(a.cert, b.cert), got)
	}
}

func TestMergeRoots_ReplacingEveryRootGivesTheNewOnes(t *testing.T) {
	a, b := newRoot(t, "A"), newRoot(t, "B")
	got, err := cacerts.MergeRoots(root.EncodePEM(a.cert), []*x509.Certificate{b.cert})
	require.NoError(t, err)
	require.Equal(t, root.EncodePEM(b.cert), got)
}

func TestMergeRoots_RefusesAGarbageCurrentFile(t *testing.T) {
	a := newRoot(t, "A")
	_, err := cacerts.MergeRoots([]byte("garbage"), []*x509.Certificate{a.cert})
	require.EqualError(t, err, "current root-cert.pem: contains data that is not PEM")
}

func TestMergeRoots_RemovingAMiddleRootKeepsTheOthersInOrder(t *testing.T) {
	a, b, c := newRoot(t, "A"), newRoot(t, "B"), newRoot(t, "C")
	got, err := cacerts.MergeRoots(root.EncodePEM(a.cert, b.cert, c.cert), []*x509.Certificate{c.cert, a.cert})
	require.NoError(t, err)
	require.Equal(t, root.EncodePEM(a.cert, c.cert), got)
}

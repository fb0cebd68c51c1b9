package root_test

import (
	"context"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/profile"
	"github.com/meshca/meshca/ca/root"
)

// fileRoot writes a root certificate and its key as files and returns the
// FileSource that reads them through a real key manager.
func fileRoot(t *testing.T) (*root.FileSource, ca) {
	t.Helper()
	r := newRoot(t, "file root", 10*365*24*time.Hour)
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "root-cert.pem"), filepath.Join(dir, "root-key.pem")
	require.NoError(t, os.WriteFile(certPath, root.EncodePEM(r.cert), 0o644))
	require.NoError(t, keys.WriteKeyFile(keyPath, r.key))
	km, err := keys.Open(context.Background(), keys.Config{Type: "softkms", Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = km.Close() })
	return &root.FileSource{RootCert: certPath, RootKey: keyPath, Profile: profile.Classical, Keys: km,
		Clock: clocktesting.NewFakePassiveClock(now)}, r
}

var interTemplate = root.IntermediateTemplate{CommonName: "meshca intermediate", Organization: "meshca", Lifetime: 30 * 24 * time.Hour}

func TestFileSource_MintsTheRequestedKeyWithTheRootKey(t *testing.T) {
	fs, r := fileRoot(t)
	var src root.Source = fs
	require.Equal(t, root.KindFileMinted, src.Kind())
	require.Equal(t, root.Capabilities{Mint: true}, src.Capabilities())
	require.NoError(t, src.Health())
	require.Nil(t, src.CurrentCRL(), "meshca signs the root's CRL itself")
	roots, err := src.Roots(context.Background())
	require.NoError(t, err)
	require.Len(t, roots, 1)
	require.True(t, roots[0].Equal(r.cert))

	k := newKey(t)
	req, err := root.NewIntermediateRequest(root.CAKey{Signer: k}, interTemplate, now)
	require.NoError(t, err)
	require.NotEmpty(t, req.CSR, "a classical key signs a CSR")
	b, err := src.MintIntermediate(context.Background(), req)
	require.NoError(t, err)
	require.NoError(t, b.Cert.CheckSignatureFrom(r.cert))
	require.True(t, k.PublicKey.Equal(b.Cert.PublicKey))
	require.Equal(t, "meshca intermediate", b.Cert.Subject.CommonName)
	require.Equal(t, []string{"meshca"}, b.Cert.Subject.Organization)
	require.Equal(t, now.Add(-2*time.Minute), b.Cert.NotBefore)
	require.Equal(t, now.Add(30*24*time.Hour), b.Cert.NotAfter)
	require.True(t, b.Cert.IsCA)
	require.True(t, b.Cert.MaxPathLenZero)
	require.Equal(t, x509.KeyUsageCertSign|x509.KeyUsageCRLSign, b.Cert.KeyUsage)
	require.Len(t, b.Roots, 1)
	require.True(t, b.Roots[0].Equal(r.cert))
	require.NoError(t, b.Verify(now))

	holder, ok := src.(root.RootKeyHolder)
	require.True(t, ok, "meshca holds a file root's key")
	rc, key, err := holder.SigningRoot()
	require.NoError(t, err)
	require.True(t, rc.Equal(r.cert))
	require.True(t, r.key.PublicKey.Equal(key.Signer.Public()))
}

// The CSR is meshca's proof that the key it asks for is its own: a CSR
// for another key than the request's, or with a broken signature, mints
// nothing.
func TestFileSource_RefusesACSRThatDoesNotProveTheKey(t *testing.T) {
	fs, _ := fileRoot(t)
	req, err := root.NewIntermediateRequest(root.CAKey{Signer: newKey(t)}, interTemplate, now)
	require.NoError(t, err)
	other, err := root.NewIntermediateRequest(root.CAKey{Signer: newKey(t)}, interTemplate, now)
	require.NoError(t, err)

	swapped := req
	swapped.PublicKeyInfo = other.PublicKeyInfo
	_, err = fs.MintIntermediate(context.Background(), swapped)
	require.EqualError(t, err, "mint intermediate: the intermediate CSR is for another key than the request's")

	broken := req
	broken.CSR = append([]byte(nil), req.CSR...)
	broken.CSR[len(broken.CSR)-1] ^= 0xff // inside the signature
	_, err = fs.MintIntermediate(context.Background(), broken)
	require.ErrorContains(t, err, "mint intermediate: the intermediate CSR's signature is invalid: ")
}

func TestFileSource_HealthNamesTheBrokenSetting(t *testing.T) {
	fs, _ := fileRoot(t)
	require.NoError(t, os.Remove(fs.RootKey))
	err := fs.Health()
	require.ErrorContains(t, err, "root.file.rootKey: ")
	_, err = fs.Roots(context.Background())
	require.ErrorContains(t, err, "root.file.rootKey: ")
}

// A pre-issued intermediate cannot mint a successor, and says so in a way
// that a caller can tell from an outage.
func TestCACertsSource_CannotMint(t *testing.T) {
	f := newCACerts(t)
	km, err := keys.Open(context.Background(), keys.Config{Type: "softkms", Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = km.Close() })
	var src root.Source = &root.CACertsSource{Dir: f.dir, Profile: profile.Classical, Keys: km, Clock: clocktesting.NewFakePassiveClock(now)}
	require.Equal(t, root.KindFileCACerts, src.Kind())
	require.Equal(t, root.Capabilities{}, src.Capabilities())
	require.NoError(t, src.Health())
	roots, err := src.Roots(context.Background())
	require.NoError(t, err)
	require.Len(t, roots, 1)
	require.True(t, roots[0].Equal(f.root.cert))

	pre, ok := src.(root.PreIssuedSource)
	require.True(t, ok)
	pi, err := pre.PreIssued(now)
	require.NoError(t, err)
	require.True(t, pi.Bundle.Cert.Equal(f.inter.cert))
	require.Equal(t, filepath.Join(f.dir, root.CAKeyFile), pi.KeyRef)

	req, err := root.NewIntermediateRequest(root.CAKey{Signer: newKey(t)}, interTemplate, now)
	require.NoError(t, err)
	b, err := src.MintIntermediate(context.Background(), req)
	require.Nil(t, b)
	require.ErrorIs(t, err, root.ErrCannotMint)
	require.NotErrorIs(t, err, root.ErrUnavailable)
	var cm *root.CannotMintError
	require.True(t, errors.As(err, &cm))
	require.Equal(t, root.KindFileCACerts, cm.Kind)
	require.EqualError(t, err, "cannot mint an intermediate: pre-issued intermediate (root.file.cacertsDir "+f.dir+
		"): meshca holds no root key; replace the files with a new intermediate, or configure root.file.rootCert and rootKey or root.source vault so that meshca mints its own")
	_, holds := src.(root.RootKeyHolder)
	require.False(t, holds)
}

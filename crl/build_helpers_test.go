package crl_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"io"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/certenc"
	"github.com/meshca/meshca/ca/pqc"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/crl"
)

// buildCA is a root and an intermediate of one profile, made by ca/root
// the way meshca makes them; the intermediate signs the CRLs.
type buildCA struct {
	profile string
	root    *x509.Certificate
	rootKey root.CAKey
	cert    *x509.Certificate
	key     root.CAKey
}

// The profiles of meshca's CAs.
var buildProfiles = []string{"classical", "catalyst", "mldsa", "composite"}

func buildKeys(t testing.TB, profile string) root.CAKey {
	t.Helper()
	switch profile {
	case "classical":
		return root.CAKey{Signer: buildP256(t)}
	case "catalyst":
		alt, err := pqc.GenerateKey("ML-DSA-65", rand.Reader)
		require.NoError(t, err)
		return root.CAKey{Signer: buildP256(t), Alt: alt.(certenc.AlgorithmSigner)}
	case "mldsa":
		k, err := pqc.GenerateKey("ML-DSA-65", rand.Reader)
		require.NoError(t, err)
		return root.CAKey{Signer: k}
	case "composite":
		k, err := pqc.GenerateKey("MLDSA65-ECDSA-P256-SHA512", rand.Reader)
		require.NoError(t, err)
		return root.CAKey{Signer: k}
	}
	t.Fatalf("unknown profile %q", profile)
	return root.CAKey{}
}

func buildP256(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return k
}

func newBuildCA(t testing.TB, profile string) *buildCA {
	t.Helper()
	now := time.Now()
	ca := &buildCA{profile: profile, rootKey: buildKeys(t, profile), key: buildKeys(t, profile)}
	var err error
	ca.root, err = root.NewRoot(ca.rootKey, "CRL Test Root "+profile, "meshca", 365*24*time.Hour, now)
	require.NoError(t, err)
	ca.cert, err = root.Mint(ca.root, ca.rootKey, ca.key, root.IntermediateTemplate{
		CommonName: "CRL Test Intermediate " + profile, Organization: "meshca", Lifetime: 90 * 24 * time.Hour,
	}, now)
	require.NoError(t, err)
	return ca
}

func (ca *buildCA) signer() crl.Signer { return crl.Signer{Key: ca.key.Signer, Alt: ca.key.Alt} }

// leaf issues a classical workload certificate under the intermediate
// (classical and catalyst profiles: the leaf's own signature is ECDSA).
func (ca *buildCA) leaf(t testing.TB, serial int64) *x509.Certificate {
	t.Helper()
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		NotBefore:    now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:        []*url.URL{{Scheme: "spiffe", Host: "cluster.local", Path: "/ns/default/sa/crl"}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, buildP256(t).Public(), ca.key.Signer)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return c
}

func entriesOf(es ...crl.Entry) crl.Entries {
	return func(yield func(crl.Entry) bool) error {
		for _, e := range es {
			if !yield(e) {
				return nil
			}
		}
		return nil
	}
}

func writeFile(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, b, 0o600))
	return p
}

func pemOf(typ string, ders ...[]byte) []byte {
	var out []byte
	for _, d := range ders {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: d})...)
	}
	return out
}

var _ crypto.Signer = (*ecdsa.PrivateKey)(nil)

// faultySigner flips a bit of every signature, as a faulty token would.
type faultySigner struct{ crypto.Signer }

func (f faultySigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	sig, err := f.Signer.Sign(r, digest, opts)
	if err == nil {
		sig[len(sig)-1] ^= 1
	}
	return sig, err
}

// faultyAlt is faultySigner for an ML-DSA key.
type faultyAlt struct{ certenc.AlgorithmSigner }

func (f faultyAlt) Sign(r io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	sig, err := f.AlgorithmSigner.Sign(r, msg, opts)
	if err == nil {
		sig[len(sig)/2] ^= 1
	}
	return sig, err
}

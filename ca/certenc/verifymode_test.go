package certenc

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"io"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// countVerifications counts the signatures certenc checks during the test.
// Tests that use it must not run in parallel.
func countVerifications(t *testing.T) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	verified = func() { n.Add(1) }
	t.Cleanup(func() { verified = nil })
	return &n
}

// hardwareSigner stands for a signer certenc cannot see into (a PKCS#11
// token, a KMS): it signs with a software key, optionally corrupting the
// signature the way a faulty token would.
type hardwareSigner struct {
	key    crypto.Signer
	faulty bool
}

func (h hardwareSigner) Public() crypto.PublicKey { return h.key.Public() }

func (h hardwareSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	sig, err := h.key.Sign(r, digest, opts)
	if err == nil && h.faulty {
		sig[len(sig)-1] ^= 0x01
	}
	return sig, err
}

// issueLeaf builds a workload leaf under a self-made intermediate of
// issuer and checks that the certificate parses and its signature verifies.
func issueLeaf(t *testing.T, issuer crypto.Signer, opts ...Option) ([]byte, error) {
	t.Helper()
	spki := spkiOf(t, issuer.Public())
	caKey := issuer
	if h, ok := issuer.(hardwareSigner); ok {
		caKey = h.key // the CA certificate itself is made with a sound signer
	}
	ca, err := x509.ParseCertificate(mustBuild(t, &Template{Certificate: rootTemplate(t, spki, "ca"), PublicKey: spki}, caKey))
	require.NoError(t, err)
	leafKey := genKey(t, "P256")
	der, err := Build(&Template{
		Certificate: workloadTemplate(t, ca.SubjectKeyId), PublicKey: spkiOf(t, leafKey.Public()), Issuer: ca.RawSubject,
	}, issuer, rand.Reader, opts...)
	if err == nil {
		leaf, perr := x509.ParseCertificate(der)
		require.NoError(t, perr)
		require.NoError(t, leaf.CheckSignatureFrom(ca))
	}
	return der, err
}

func mustBuild(t *testing.T, tmpl *Template, issuer crypto.Signer) []byte {
	t.Helper()
	der, err := Build(tmpl, issuer, rand.Reader, VerifyAlways)
	require.NoError(t, err)
	return der
}

func TestVerifyMode_AutoSkipsOnlyInProcessECAndEd25519(t *testing.T) {
	for kind, want := range map[string]int64{"P256": 0, "P384": 0, "Ed25519": 0, "RSA2048": 1} {
		t.Run(kind, func(t *testing.T) {
			key := genKey(t, kind)
			n := countVerifications(t)
			_, err := issueLeaf(t, key) // the default is VerifyAuto
			require.NoError(t, err)
			require.Equal(t, want, n.Load()-1, "signatures checked for the leaf (the CA certificate, built with VerifyAlways, is one more)")
		})
	}
}

func TestVerifyMode_AlwaysChecksInProcessEC(t *testing.T) {
	for _, kind := range []string{"P256", "P384", "Ed25519", "RSA2048"} {
		t.Run(kind, func(t *testing.T) {
			key := genKey(t, kind)
			n := countVerifications(t)
			_, err := issueLeaf(t, key, VerifyAlways)
			require.NoError(t, err)
			require.Equal(t, int64(2), n.Load(), "the CA certificate and the leaf")
		})
	}
}

func TestVerifyMode_AutoChecksASignerItCannotSeeInto(t *testing.T) {
	for _, kind := range []string{"P256", "Ed25519"} {
		t.Run(kind, func(t *testing.T) {
			key := genKey(t, kind)
			n := countVerifications(t)
			_, err := issueLeaf(t, hardwareSigner{key: key})
			require.NoError(t, err)
			require.Equal(t, int64(2), n.Load(), "the CA certificate and the leaf")

			_, err = issueLeaf(t, hardwareSigner{key: key, faulty: true})
			require.EqualError(t, err, "certenc: signature returned by signer is invalid: "+map[string]string{
				"P256": "ECDSA verification failure", "Ed25519": "Ed25519 verification failure",
			}[kind])
		})
	}
}

func TestVerifyMode_AutoChecksTheMLDSAAlternativeSignature(t *testing.T) {
	issuer, alt := genKey(t, "P256"), newMLDSASigner(t)
	tmpl := benchTemplate(t)
	n := countVerifications(t)
	_, err := BuildCatalyst(tmpl, issuer, Catalyst{Issuer: alt}, rand.Reader)
	require.NoError(t, err)
	require.Equal(t, int64(1), n.Load(), "only the ML-DSA alternative signature")

	alt.faulty = true
	_, err = BuildCatalyst(tmpl, issuer, Catalyst{Issuer: alt}, rand.Reader)
	require.ErrorContains(t, err, "alternative signature: certenc: signature returned by signer is invalid")
}

func TestVerifyMode_String(t *testing.T) {
	require.Equal(t, "auto", VerifyAuto.String())
	require.Equal(t, "always", VerifyAlways.String())
}

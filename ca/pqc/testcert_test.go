package pqc

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"github.com/meshca/meshca/ca/certenc"
	"github.com/meshca/meshca/ca/oid"
	"io"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// A test-only certificate builder. crypto/x509 cannot sign with ML-DSA or
// composite keys, so the builder lets x509.CreateCertificate lay out the
// TBSCertificate, then swaps in the real signature AlgorithmIdentifier and
// SubjectPublicKeyInfo, adds the Catalyst extensions and signs itself. It
// is independent of ca/certenc on purpose.

// algorithmSigner is a PQ issuer key (ML-DSA or composite).
type algorithmSigner interface {
	crypto.Signer
	SignatureAlgorithm() pkix.AlgorithmIdentifier
}

// testCA is an issued certificate with its keys.
type testCA struct {
	cert   *x509.Certificate
	key    crypto.Signer // primary key
	altKey crypto.Signer // Catalyst alternative key, nil when none
}

type certOpts struct {
	cn      string
	key     crypto.Signer // the subject's primary key
	altKey  crypto.Signer // the subject's alternative key: adds 2.5.29.72
	issuer  *testCA       // nil: self-signed
	altSign bool          // add 2.5.29.73/.74, signed by the issuer's altKey
	ca      bool
}

var (
	testDummyKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	oidECDSASHA256  = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
)

func mustDER(t *testing.T, v any) []byte {
	t.Helper()
	b, err := asn1.Marshal(v)
	require.NoError(t, err)
	return b
}

func signatureAlgorithmOf(t *testing.T, key crypto.Signer) pkix.AlgorithmIdentifier {
	t.Helper()
	if as, ok := key.(algorithmSigner); ok {
		return as.SignatureAlgorithm()
	}
	_, ok := key.(*ecdsa.PrivateKey)
	require.True(t, ok, "test builder signs classically with ECDSA P-256 only")
	return pkix.AlgorithmIdentifier{Algorithm: oidECDSASHA256}
}

func signWith(t *testing.T, key crypto.Signer, msg []byte) []byte {
	t.Helper()
	if _, ok := key.(algorithmSigner); ok {
		sig, err := key.Sign(rand.Reader, msg, crypto.Hash(0))
		require.NoError(t, err)
		return sig
	}
	d := sha256.Sum256(msg)
	sig, err := key.Sign(rand.Reader, d[:], crypto.SHA256)
	require.NoError(t, err)
	return sig
}

func encodeSequence(t *testing.T, elems [][]byte) []byte {
	t.Helper()
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, e := range elems {
			b.AddBytes(e)
		}
	})
	out, err := b.Bytes()
	require.NoError(t, err)
	return out
}

// withExtension returns tbs with ext (a DER Extension) appended.
func withExtension(t *testing.T, tbs, ext []byte) []byte {
	t.Helper()
	f, err := certenc.ParseTBS(tbs)
	require.NoError(t, err)
	require.GreaterOrEqual(t, f.ExtensionsIndex, 0)
	var b cryptobyte.Builder
	b.AddASN1(tagExtensionsTest, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			for _, e := range f.Extensions {
				b.AddBytes(e.Raw)
			}
			b.AddBytes(ext)
		})
	})
	exts, err := b.Bytes()
	require.NoError(t, err)
	elems := append([][]byte(nil), f.Elements...)
	elems[f.ExtensionsIndex] = exts
	return encodeSequence(t, elems)
}

func issueTestCert(t *testing.T, o certOpts) *testCA {
	t.Helper()
	signer, signerAlt := o.key, o.altKey
	if o.issuer != nil {
		signer, signerAlt = o.issuer.key, o.issuer.altKey
	}
	spki, err := MarshalPKIXPublicKey(o.key.Public())
	require.NoError(t, err)
	ski := sha1.Sum(spki)
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: o.cn},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		BasicConstraintsValid: true,
		IsCA:                  o.ca,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		SubjectKeyId:          ski[:],
	}
	if o.ca {
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	if o.altKey != nil {
		altSPKI, err := MarshalPKIXPublicKey(o.altKey.Public())
		require.NoError(t, err)
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: oid.SubjectAltPublicKeyInfo, Value: altSPKI})
	}
	if o.altSign {
		require.NotNil(t, signerAlt, "alt signing needs an issuer alt key")
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions,
			pkix.Extension{Id: oid.AltSignatureAlgorithm, Value: mustDER(t, signatureAlgorithmOf(t, signerAlt))})
	}
	parent, layoutKey := tmpl, crypto.Signer(testDummyKey)
	if o.issuer != nil {
		parent = o.issuer.cert
		if ec, ok := o.issuer.key.(*ecdsa.PrivateKey); ok {
			layoutKey = ec // x509 insists on the parent's own classical key
		}
	}
	layout, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &testDummyKey.PublicKey, layoutKey)
	require.NoError(t, err)
	laidOut, err := x509.ParseCertificate(layout)
	require.NoError(t, err)

	f, err := certenc.ParseTBS(laidOut.RawTBSCertificate)
	require.NoError(t, err)
	sigAlg := mustDER(t, signatureAlgorithmOf(t, signer))
	elems := append([][]byte(nil), f.Elements...)
	elems[f.SignatureIndex], elems[f.PublicKeyIndex] = sigAlg, spki
	tbs := encodeSequence(t, elems)

	if o.altSign {
		pre, err := certenc.PreTBS(tbs)
		require.NoError(t, err)
		altSig := signWith(t, signerAlt, pre)
		value := mustDER(t, asn1.BitString{Bytes: altSig, BitLength: 8 * len(altSig)})
		tbs = withExtension(t, tbs, mustDER(t, pkix.Extension{Id: oid.AltSignatureValue, Value: value}))
	}
	sig := signWith(t, signer, tbs)
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbs)
		b.AddBytes(sigAlg)
		b.AddASN1BitString(sig)
	})
	der, err := b.Bytes()
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &testCA{cert: cert, key: o.key, altKey: o.altKey}
}

// faultySigner corrupts one byte of every signature at offset from the end
// (offset 1 = last byte), to break one half of a composite signature.
type faultySigner struct {
	algorithmSigner
	offset int
}

func (f faultySigner) Sign(r io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	sig, err := f.algorithmSigner.Sign(r, msg, opts)
	if err == nil {
		sig[len(sig)-f.offset] ^= 0x01
	}
	return sig, err
}

// tagExtensionsTest is the [3] tag of TBSCertificate extensions.
var tagExtensionsTest = cbasn1.Tag(3).ContextSpecific().Constructed()

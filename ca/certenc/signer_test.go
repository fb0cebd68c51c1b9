package certenc

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"testing"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/stretchr/testify/require"
)

// The exported Signer signs any DER message with the profile certenc uses
// for certificates; crypto/x509 and circl check the signatures.
func TestNewSigner_SignsAnyMessage(t *testing.T) {
	msg, err := asn1.Marshal(struct{ A, B int }{1, 2}) // not a TBSCertificate
	require.NoError(t, err)
	for kind, alg := range map[string]x509.SignatureAlgorithm{
		"P256": x509.ECDSAWithSHA256, "P384": x509.ECDSAWithSHA384, "P521": x509.ECDSAWithSHA512,
		"Ed25519": x509.PureEd25519, "RSA2048": x509.SHA256WithRSA,
	} {
		t.Run(kind, func(t *testing.T) {
			key := genKey(t, kind)
			s, err := NewSigner(key, VerifyAlways)
			require.NoError(t, err)
			ai, err := SignatureAlgorithmOf(key)
			require.NoError(t, err)
			want, err := asn1.Marshal(ai)
			require.NoError(t, err)
			require.Equal(t, want, s.Algorithm())
			sig, err := s.Sign(rand.Reader, msg)
			require.NoError(t, err)
			pub := &x509.Certificate{PublicKey: key.Public()}
			require.NoError(t, pub.CheckSignature(alg, msg, sig))
			require.Error(t, pub.CheckSignature(alg, append(msg, 0), sig))
		})
	}
	t.Run("ML-DSA-65", func(t *testing.T) {
		key := newMLDSASigner(t)
		s, err := NewSigner(key)
		require.NoError(t, err)
		require.Equal(t, []byte{0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x12}, s.Algorithm(),
			"RFC 9881: id-ml-dsa-65 with absent parameters")
		sig, err := s.Sign(rand.Reader, msg)
		require.NoError(t, err)
		require.True(t, mldsa65.Verify(key.pk, msg, nil, sig))
	})
}

func TestNewSigner_AlgorithmIsACopy(t *testing.T) {
	s, err := NewSigner(genKey(t, "P256"))
	require.NoError(t, err)
	a := s.Algorithm()
	a[len(a)-1] ^= 0xff
	s2, err := NewSigner(genKey(t, "P256"))
	require.NoError(t, err)
	require.NotEqual(t, a, s.Algorithm())
	require.Equal(t, s.Algorithm(), s2.Algorithm())
}

func TestNewSigner_VerifyAlwaysCatchesAFaultySignature(t *testing.T) {
	msg := []byte{0x30, 0x03, 0x02, 0x01, 0x07}
	n := countVerifications(t)
	s, err := NewSigner(genKey(t, "P256"), VerifyAlways)
	require.NoError(t, err)
	_, err = s.Sign(rand.Reader, msg)
	require.NoError(t, err)
	require.Equal(t, int64(1), n.Load(), "VerifyAlways checks an in-process ECDSA key too")

	s, err = NewSigner(hardwareSigner{key: genKey(t, "P256"), faulty: true}, VerifyAlways)
	require.NoError(t, err)
	_, err = s.Sign(rand.Reader, msg)
	require.EqualError(t, err, "certenc: signature returned by signer is invalid: ECDSA verification failure")

	alt := newMLDSASigner(t)
	alt.faulty = true
	s, err = NewSigner(alt)
	require.NoError(t, err)
	_, err = s.Sign(rand.Reader, msg)
	require.EqualError(t, err, "certenc: signature returned by signer is invalid: ML-DSA-65 verification failure")
}

func TestNewSigner_RefusesWhatCertencCannotSign(t *testing.T) {
	_, err := NewSigner(nil)
	require.EqualError(t, err, "certenc: no issuer signer")
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	require.NoError(t, err)
	_, err = NewSigner(p224)
	require.ErrorContains(t, err, "unsupported ECDSA curve P-224")
}

package pqc_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509/pkix"
	"testing"

	"github.com/meshca/meshca/ca/pqc"
	"github.com/meshca/meshca/ca/pqc/composite"
	"github.com/meshca/meshca/ca/pqc/mldsa"
	"github.com/stretchr/testify/require"
)

// The certificate encoder's contract: a crypto.Signer that names its own
// signature AlgorithmIdentifier, and a public key that verifies.
type algorithmSigner interface {
	crypto.MessageSigner
	SignatureAlgorithm() pkix.AlgorithmIdentifier
}

type verifier interface {
	Verify(message, signature []byte) error
}

var (
	_ algorithmSigner = (*mldsa.PrivateKey)(nil)
	_ algorithmSigner = (*composite.PrivateKey)(nil)
	_ verifier        = (*mldsa.PublicKey)(nil)
	_ verifier        = (*composite.PublicKey)(nil)
)

func TestGenerateKey_EverySigningAlgorithmRoundTripsThroughPEM(t *testing.T) {
	require.Equal(t, []string{
		"ML-DSA-44", "ML-DSA-65", "ML-DSA-87", "MLDSA44-ECDSA-P256-SHA256", "MLDSA65-ECDSA-P256-SHA512",
	}, pqc.SigningAlgorithms())
	for _, name := range pqc.SigningAlgorithms() {
		t.Run(name, func(t *testing.T) {
			key, err := pqc.GenerateKey(name, nil)
			require.NoError(t, err)
			as := key.(algorithmSigner)
			require.Equal(t, name, pqc.OIDName(as.SignatureAlgorithm().Algorithm))

			keyPEM, err := pqc.MarshalPrivateKeyPEM(key)
			require.NoError(t, err)
			parsed, err := pqc.ParsePrivateKeyPEM(keyPEM)
			require.NoError(t, err)
			require.True(t, parsed.(interface{ Equal(crypto.PrivateKey) bool }).Equal(key))

			pubPEM, err := pqc.MarshalPublicKeyPEM(parsed.Public())
			require.NoError(t, err)
			pub, err := pqc.ParsePublicKeyPEM(pubPEM)
			require.NoError(t, err)

			msg := []byte("dispatch")
			sig, err := crypto.SignMessage(parsed, rand.Reader, msg, crypto.Hash(0))
			require.NoError(t, err)
			require.NoError(t, pqc.VerifySignature(as.SignatureAlgorithm(), pub, msg, sig))
			msg[0] ^= 1
			require.ErrorIs(t, pqc.VerifySignature(as.SignatureAlgorithm(), pub, msg, sig), pqc.ErrInvalidSignature)
		})
	}
	_, err := pqc.GenerateKey("MLDSA65-RSA3072-PSS-SHA512", nil)
	require.ErrorContains(t, err, `unknown signing algorithm "MLDSA65-RSA3072-PSS-SHA512"`)
}

func TestKeyDispatch_PassesClassicalKeysToCryptoX509(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	keyPEM, err := pqc.MarshalPrivateKeyPEM(ec)
	require.NoError(t, err)
	parsed, err := pqc.ParsePrivateKeyPEM(keyPEM)
	require.NoError(t, err)
	require.True(t, ec.Equal(parsed))
	spki, err := pqc.MarshalPKIXPublicKey(&ec.PublicKey)
	require.NoError(t, err)
	pub, err := pqc.ParsePKIXPublicKey(spki)
	require.NoError(t, err)
	require.True(t, ec.PublicKey.Equal(pub))
}

func TestVerifySignature_RejectsMismatchedKeysAndParameters(t *testing.T) {
	m44, err := mldsa.GenerateKey(mldsa.MLDSA44, nil)
	require.NoError(t, err)
	m65, err := mldsa.GenerateKey(mldsa.MLDSA65, nil)
	require.NoError(t, err)
	msg := []byte("m")
	sig, err := m44.Sign(nil, msg, crypto.Hash(0))
	require.NoError(t, err)

	require.NoError(t, pqc.VerifySignature(m44.SignatureAlgorithm(), m44.Public(), msg, sig))
	require.ErrorIs(t, pqc.VerifySignature(m44.SignatureAlgorithm(), m65.Public(), msg, sig), pqc.ErrKeyAlgorithmMismatch)

	withNULL := m44.SignatureAlgorithm()
	withNULL.Parameters.Tag, withNULL.Parameters.FullBytes = 5, []byte{5, 0}
	require.ErrorIs(t, pqc.VerifySignature(withNULL, m44.Public(), msg, sig), pqc.ErrParametersPresent)

	ecdsaAlg := pkix.AlgorithmIdentifier{Algorithm: []int{1, 2, 840, 10045, 4, 3, 2}}
	require.ErrorIs(t, pqc.VerifySignature(ecdsaAlg, m44.Public(), msg, sig), pqc.ErrNotPostQuantum)
}

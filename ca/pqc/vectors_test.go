package pqc_test

import (
	"crypto"
	"crypto/x509"
	"testing"

	"github.com/meshca/meshca/ca/pqc"
	"github.com/meshca/meshca/ca/pqc/composite"
	"github.com/meshca/meshca/ca/pqc/internal/pqctest"
	"github.com/meshca/meshca/ca/pqc/mldsa"
	"github.com/stretchr/testify/require"
)

// contextVerifier is what both key types offer for vectors with a context.
type contextVerifier interface {
	VerifyWithContext(message, context, signature []byte) error
}

func vectorKey(t *testing.T, v pqctest.Vector) (crypto.PublicKey, error) {
	t.Helper()
	if p, ok := mldsa.ParameterSetByName(v.Name()); ok {
		return mldsa.NewPublicKey(p, v.PK)
	}
	alg, ok := composite.AlgorithmByName(v.Name())
	require.True(t, ok, "unknown algorithm %s", v.TcID)
	return composite.NewPublicKey(alg, v.PK)
}

// All 21 draft-ietf-lamps-pq-composite-sigs-19 vectors (3 pure ML-DSA +
// 18 composite): s over m and sWithContext over m with ctx verify, and the
// self-signed x5c certificate verifies too.
func TestDraft19Vectors_VerifyEverySupportedAlgorithm(t *testing.T) {
	v := pqctest.LoadVectors(t)
	require.Len(t, v.Tests, 21)
	signatures, certificates := 0, 0
	for _, tc := range v.Tests {
		t.Run(tc.Name(), func(t *testing.T) {
			pub, err := vectorKey(t, tc)
			require.NoError(t, err)
			cert, err := x509.ParseCertificate(tc.X5C)
			require.NoError(t, err)
			spki, err := pqc.MarshalPKIXPublicKey(pub)
			require.NoError(t, err)
			require.Equal(t, cert.RawSubjectPublicKeyInfo, spki, "pk and the x5c SPKI agree")

			cv := pub.(contextVerifier)
			require.NoError(t, cv.VerifyWithContext(v.M, nil, tc.S), "s over m")
			require.NoError(t, cv.VerifyWithContext(v.M, v.Ctx, tc.SWithContext), "sWithContext over m with ctx")
			signatures += 2
			require.Error(t, cv.VerifyWithContext(v.M, nil, tc.SWithContext), "the context is bound")

			require.NoError(t, pqc.VerifyCertificateSignature(cert, spki))
			certificates++
		})
	}
	require.Equal(t, 42, signatures, "21 algorithms x {s, sWithContext}")
	require.Equal(t, 21, certificates)
}

// The pure ML-DSA vectors carry a seed-only PKCS#8 key; meshca's encoding
// must match it byte for byte.
func TestDraft19Vectors_PureMLDSAPrivateKeysRoundTrip(t *testing.T) {
	v := pqctest.LoadVectors(t)
	seen := 0
	for _, tc := range v.Tests {
		p, ok := mldsa.ParameterSetByName(tc.Name())
		if !ok {
			continue
		}
		seen++
		sk, err := pqc.ParsePKCS8PrivateKey(tc.SKPKCS8)
		require.NoError(t, err)
		require.Same(t, p, sk.(*mldsa.PrivateKey).ParameterSet())
		require.Equal(t, tc.SK, sk.(*mldsa.PrivateKey).Seed())
		require.Equal(t, tc.PK, sk.(*mldsa.PrivateKey).PublicKey().Bytes())
		again, err := pqc.MarshalPKCS8PrivateKey(sk)
		require.NoError(t, err)
		require.Equal(t, tc.SKPKCS8, again)
	}
	require.Equal(t, 3, seen)
}

// RFC 9881's example certificates are self-signed and verify.
func TestVerifyCertificateSignature_RFC9881ExampleCertificates(t *testing.T) {
	for _, p := range mldsa.ParameterSets() {
		t.Run(p.Name(), func(t *testing.T) {
			cert := parseCert(t, pqctest.PEM(t, "rfc9881", p.Name()+".crt"))
			pub, err := mldsa.ParsePKIXPublicKey(pqctest.PEM(t, "rfc9881", p.Name()+".pub"))
			require.NoError(t, err)
			spki, err := mldsa.MarshalPKIXPublicKey(pub)
			require.NoError(t, err)
			require.Equal(t, spki, cert.RawSubjectPublicKeyInfo)
			verifySelfSigned(t, cert)
		})
	}
}

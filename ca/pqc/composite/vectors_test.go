package composite_test

import (
	"strings"
	"testing"

	"github.com/meshca/meshca/ca/pqc/composite"
	"github.com/meshca/meshca/ca/pqc/internal/pqctest"
	"github.com/stretchr/testify/require"
)

// Every composite vector of draft-19: s over m and sWithContext over m
// with ctx verify for the 15 algorithms Go's standard library supports;
// the other 3 are refused with ErrUnsupportedAlgorithm, by name.
func TestDraft19Vectors_CompositeSignaturesVerify(t *testing.T) {
	v := pqctest.LoadVectors(t)
	verified := 0
	var unsupported []string
	for _, tc := range v.Tests {
		if strings.HasPrefix(tc.TcID, "id-ML-DSA-") {
			continue // pure ML-DSA vectors: see the pqc package test
		}
		t.Run(tc.Name(), func(t *testing.T) {
			alg, ok := composite.AlgorithmByName(tc.TcID)
			require.True(t, ok, "unknown composite %s", tc.TcID)
			pub, err := composite.NewPublicKey(alg, tc.PK)
			require.NoError(t, err)
			if alg.VerifySupported() != nil {
				require.ErrorIs(t, pub.Verify(v.M, tc.S), composite.ErrUnsupportedAlgorithm)
				require.ErrorIs(t, pub.VerifyWithContext(v.M, v.Ctx, tc.SWithContext), composite.ErrUnsupportedAlgorithm)
				unsupported = append(unsupported, alg.Name())
				return
			}
			require.NoError(t, pub.Verify(v.M, tc.S))
			require.NoError(t, pub.VerifyWithContext(v.M, v.Ctx, tc.SWithContext))
			verified += 2

			// The two signatures are not interchangeable.
			require.ErrorIs(t, pub.Verify(v.M, tc.SWithContext), composite.ErrInvalidSignature)
			require.ErrorIs(t, pub.VerifyWithContext(v.M, v.Ctx, tc.S), composite.ErrInvalidSignature)
		})
	}
	require.Equal(t, 30, verified, "15 supported composite algorithms x {s, sWithContext}")
	require.Equal(t, []string{
		"MLDSA65-ECDSA-brainpoolP256r1-SHA512",
		"MLDSA87-ECDSA-brainpoolP384r1-SHA512",
		"MLDSA87-Ed448-SHAKE256",
	}, unsupported)
}

// The private keys of the two signing algorithms parse from both "sk" and
// "sk_pkcs8", derive "pk", re-encode byte for byte, and sign verifiably.
func TestDraft19Vectors_SigningAlgorithmPrivateKeysRoundTrip(t *testing.T) {
	v := pqctest.LoadVectors(t)
	seen := 0
	for _, tc := range v.Tests {
		alg, ok := composite.AlgorithmByName(tc.TcID)
		if !ok || !alg.CanSign() {
			continue
		}
		seen++
		t.Run(tc.Name(), func(t *testing.T) {
			fromRaw, err := composite.NewPrivateKey(alg, tc.SK)
			require.NoError(t, err)
			fromPKCS8, err := composite.ParsePKCS8PrivateKey(tc.SKPKCS8)
			require.NoError(t, err)
			require.True(t, fromRaw.Equal(fromPKCS8))
			require.Equal(t, tc.PK, fromPKCS8.PublicKey().Bytes())

			again, err := composite.MarshalPKCS8PrivateKey(fromPKCS8)
			require.NoError(t, err)
			require.Equal(t, tc.SKPKCS8, again)

			sig, err := fromPKCS8.SignWithContext(nil, v.M, v.Ctx)
			require.NoError(t, err)
			pub, err := composite.NewPublicKey(alg, tc.PK)
			require.NoError(t, err)
			require.NoError(t, pub.VerifyWithContext(v.M, v.Ctx, sig))
		})
	}
	require.Equal(t, 2, seen)
}

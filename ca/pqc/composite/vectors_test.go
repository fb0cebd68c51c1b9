package composite_test

import (
	"strings"
	"testing"

	"github.com/meshca/meshca/ca/pqc/composite"
	"github.com/meshca/meshca/ca/pqc/internal/pqctest"
	"github.com/stretchr/testify/require"
)

// Every composite vector of draft-19: s over m and sWithContext over m
// with ctx verify for all 18 algorithms, brainpool ECDSA and Ed448
// included.
func TestDraft19Vectors_CompositeSignaturesVerify(t *testing.T) {
	v := pqctest.LoadVectors(t)
	verified := 0
	var names []string
	for _, tc := range v.Tests {
		if strings.HasPrefix(tc.TcID, "id-ML-DSA-") {
			continue // pure ML-DSA vectors: see the pqc package test
		}
		t.Run(tc.Name(), func(t *testing.T) {
			alg, ok := composite.AlgorithmByName(tc.TcID)
			require.True(t, ok, "unknown composite %s", tc.TcID)
			pub, err := composite.NewPublicKey(alg, tc.PK)
			require.NoError(t, err)
			require.NoError(t, pub.Verify(v.M, tc.S))
			require.NoError(t, pub.VerifyWithContext(v.M, v.Ctx, tc.SWithContext))
			verified += 2
			names = append(names, alg.Name())

			// The two signatures are not interchangeable.
			require.ErrorIs(t, pub.Verify(v.M, tc.SWithContext), composite.ErrInvalidSignature)
			require.ErrorIs(t, pub.VerifyWithContext(v.M, v.Ctx, tc.S), composite.ErrInvalidSignature)
		})
	}
	require.Equal(t, 36, verified, "18 composite algorithms x {s, sWithContext}")
	var want []string
	for _, a := range composite.Algorithms() {
		want = append(want, a.Name())
	}
	require.ElementsMatch(t, want, names)
}

// A flipped byte in the traditional half of the brainpool and Ed448
// signatures is caught: the traditional component is really checked.
func TestDraft19Vectors_BrainpoolAndEd448TraditionalHalfIsChecked(t *testing.T) {
	v := pqctest.LoadVectors(t)
	seen := 0
	for _, tc := range v.Tests {
		switch tc.TcID {
		case "id-MLDSA65-ECDSA-brainpoolP256r1-SHA512", "id-MLDSA87-ECDSA-brainpoolP384r1-SHA512", "id-MLDSA87-Ed448-SHAKE256":
		default:
			continue
		}
		seen++
		t.Run(tc.Name(), func(t *testing.T) {
			alg, ok := composite.AlgorithmByName(tc.TcID)
			require.True(t, ok)
			pub, err := composite.NewPublicKey(alg, tc.PK)
			require.NoError(t, err)
			require.NoError(t, pub.Verify(v.M, tc.S))
			bad := append([]byte(nil), tc.S...)
			bad[len(bad)-5] ^= 0x01 // inside the traditional signature, which follows ML-DSA's
			err = pub.Verify(v.M, bad)
			require.ErrorIs(t, err, composite.ErrInvalidSignature)
			require.NotContains(t, err.Error(), "ML-DSA component")
			require.Error(t, pub.Verify([]byte("another message"), tc.S))
		})
	}
	require.Equal(t, 3, seen)
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

// The brainpool halves are validated as points on their curve (SEC 1
// section 3.2.2.1), and the Ed448 half must be 57 bytes (RFC 8032).
func TestNewPublicKey_RejectsBrainpoolPointOffTheCurveAndShortEd448Key(t *testing.T) {
	v := pqctest.LoadVectors(t)
	seen := 0
	for _, tc := range v.Tests {
		alg, ok := composite.AlgorithmByName(tc.TcID)
		if !ok || (!strings.Contains(tc.TcID, "brainpool") && !strings.Contains(tc.TcID, "Ed448")) {
			continue
		}
		seen++
		t.Run(tc.Name(), func(t *testing.T) {
			_, err := composite.NewPublicKey(alg, tc.PK)
			require.NoError(t, err)
			bad := append([]byte(nil), tc.PK...)
			if strings.Contains(tc.TcID, "Ed448") {
				bad = bad[:len(bad)-1]
			} else {
				bad[len(bad)-1] ^= 0x01 // y no longer matches x
			}
			_, err = composite.NewPublicKey(alg, bad)
			require.ErrorIs(t, err, composite.ErrMalformedPublicKey)
		})
	}
	require.Equal(t, 3, seen)
}

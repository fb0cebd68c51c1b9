package root_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/certenc"
	"github.com/meshca/meshca/ca/pqc"
	"github.com/meshca/meshca/ca/root"
)

// pqNow is the clock of these tests.
var pqNow = time.Now()

func ecKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return k
}

func pqKey(t *testing.T, alg string) certenc.AlgorithmSigner {
	t.Helper()
	k, err := pqc.GenerateKey(alg, nil)
	require.NoError(t, err)
	return k.(certenc.AlgorithmSigner)
}

// pqPair is a root and an intermediate minted with NewRoot and Mint.
type pqPair struct {
	rootKey, interKey root.CAKey
	root, inter       *x509.Certificate
}

func newPQPair(t *testing.T, rootKey, interKey root.CAKey) pqPair {
	t.Helper()
	r, err := root.NewRoot(rootKey, "root", "meshca-test", 24*time.Hour, pqNow)
	require.NoError(t, err)
	i, err := root.Mint(r, rootKey, interKey, root.IntermediateTemplate{CommonName: "inter", Organization: "meshca-test", Lifetime: time.Hour}, pqNow)
	require.NoError(t, err)
	return pqPair{rootKey, interKey, r, i}
}

func TestNewRootAndMint_EveryProfileVerifiesAndKeepsTheIntermediateShape(t *testing.T) {
	cases := map[string]struct {
		rootKey, interKey root.CAKey
		pqSigned          bool
	}{
		"classical": {root.CAKey{Signer: ecKey(t)}, root.CAKey{Signer: ecKey(t)}, false},
		"catalyst":  {root.CAKey{Signer: ecKey(t), Alt: pqKey(t, "ML-DSA-65")}, root.CAKey{Signer: ecKey(t), Alt: pqKey(t, "ML-DSA-65")}, false},
		"composite": {root.CAKey{Signer: pqKey(t, "MLDSA65-ECDSA-P256-SHA512")}, root.CAKey{Signer: pqKey(t, "MLDSA65-ECDSA-P256-SHA512")}, true},
		"mldsa":     {root.CAKey{Signer: pqKey(t, "ML-DSA-44")}, root.CAKey{Signer: pqKey(t, "ML-DSA-44")}, true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			p := newPQPair(t, tc.rootKey, tc.interKey)
			require.Equal(t, tc.pqSigned, root.SignedPostQuantum(p.root))
			require.Equal(t, tc.pqSigned, root.SignedPostQuantum(p.inter))
			require.True(t, p.inter.IsCA)
			require.True(t, p.inter.MaxPathLenZero)
			require.Equal(t, x509.KeyUsageCertSign|x509.KeyUsageCRLSign, p.inter.KeyUsage)
			require.Equal(t, p.root.SubjectKeyId, p.inter.AuthorityKeyId)
			spki, err := pqc.MarshalPKIXPublicKey(tc.interKey.Signer.Public())
			require.NoError(t, err)
			ski, err := certenc.SubjectKeyID(spki)
			require.NoError(t, err)
			require.Equal(t, ski, p.inter.SubjectKeyId)

			require.NoError(t, root.CheckSignatureFrom(p.inter, p.root))
			require.NoError(t, root.CheckSignatureFrom(p.root, p.root))
			require.NoError(t, root.CheckKeyMatches(p.inter, tc.interKey.Signer))
			require.Error(t, root.CheckKeyMatches(p.inter, tc.rootKey.Signer))

			b := &root.Bundle{Cert: p.inter, Roots: []*x509.Certificate{p.root}}
			require.NoError(t, b.Verify(pqNow))
			require.Equal(t, []*x509.Certificate{p.inter, p.root}, b.Chain())
			if tc.rootKey.Alt != nil || tc.pqSigned {
				a, err := pqc.AnchorFromCertificate(p.root)
				require.NoError(t, err)
				require.NoError(t, b.VerifyPQ(a))
			}
			if tc.interKey.Alt != nil {
				require.NoError(t, root.CheckAltKeyMatches(p.inter, tc.interKey.Alt))
				require.EqualError(t, root.CheckAltKeyMatches(p.inter, tc.rootKey.Alt), "the ML-DSA key does not match the certificate's alternative public key (2.5.29.72)")
			}

			// A PQ chain does not verify to another root of the same name
			// and algorithm, nor after it expired.
			if tc.pqSigned {
				stranger, err := root.NewRoot(root.CAKey{Signer: pqKey(t, keyAlg(t, tc.rootKey))}, "root", "meshca-test", 24*time.Hour, pqNow)
				require.NoError(t, err)
				wrong := &root.Bundle{Cert: p.inter, Roots: []*x509.Certificate{stranger}}
				require.ErrorIs(t, wrong.Verify(pqNow), pqc.ErrInvalidSignature)
				require.ErrorContains(t, (&root.Bundle{Cert: p.inter, Roots: []*x509.Certificate{p.root}}).Verify(pqNow.Add(48*time.Hour)), "expired")
			}
		})
	}
}

func keyAlg(t *testing.T, k root.CAKey) string {
	t.Helper()
	d := k.Signer.(certenc.AlgorithmSigner).SignatureAlgorithm()
	return pqc.OIDName(d.Algorithm)
}

func TestMint_CatalystIntermediateUnderAClassicalRootCarriesOnlyItsKey(t *testing.T) {
	p := newPQPair(t, root.CAKey{Signer: ecKey(t)}, root.CAKey{Signer: ecKey(t), Alt: pqKey(t, "ML-DSA-65")})
	cat, err := pqc.ParseCatalyst(p.inter)
	require.NoError(t, err)
	require.NotNil(t, cat.SubjectAltPublicKeyInfo)
	require.False(t, cat.SubjectAltPublicKeyCritical)
	require.False(t, cat.HasAltSignature(), "a classical root makes no alternative signature")
	_, err = pqc.ParseCatalyst(p.root)
	require.NoError(t, err)
	alt, err := root.AltPublicKeyInfo(p.root)
	require.NoError(t, err)
	require.Nil(t, alt)
	require.NoError(t, (&root.Bundle{Cert: p.inter, Roots: []*x509.Certificate{p.root}}).Verify(pqNow))
}

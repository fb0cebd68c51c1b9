package pqc_test

import (
	"testing"

	"github.com/meshca/meshca/ca/oid"
	"github.com/meshca/meshca/ca/pqc"
	"github.com/meshca/meshca/ca/pqc/internal/pqctest"
	"github.com/stretchr/testify/require"
)

func TestDescribe_ReportsPQFactsOfEachProfile(t *testing.T) {
	bc := pqctest.Zip(t, "bc")
	ref := pqctest.Zip(t, "composite-sigs-ref-impl")

	t.Run("Bouncy Castle Catalyst ECDSA + ML-DSA-44", func(t *testing.T) {
		d, err := pqc.Describe(parseCert(t, bc["catalyst_1.2.840.10045.4.3.2_with_2.16.840.1.101.3.4.3.17_ta.der"]))
		require.NoError(t, err)
		require.Equal(t, pqc.ProfileCatalyst, d.Profile)
		require.Equal(t, "id-ecPublicKey", d.PublicKey.Name)
		require.Equal(t, "ECDSA P-256", d.PublicKey.Detail)
		require.Equal(t, pqc.FamilyClassical, d.Signature.Family)
		require.Equal(t, "ecdsa-with-SHA256", d.Signature.Name)
		require.NotNil(t, d.AltPublicKey)
		require.Equal(t, "ML-DSA-44", d.AltPublicKey.Name)
		require.Equal(t, "2.16.840.1.101.3.4.3.17", d.AltPublicKey.OID.String())
		require.Equal(t, "1312-byte public key, NIST category 2", d.AltPublicKey.Detail)
		require.True(t, d.AltPublicKeyCritical)
		require.NotNil(t, d.AltSignature)
		require.Equal(t, "ML-DSA-44", d.AltSignature.Name)
		require.Equal(t, 2420, d.AltSignatureSize)
		require.Equal(t, "Post-quantum profile: "+pqc.ProfileCatalyst+"\n"+
			"  Public key: id-ecPublicKey (1.2.840.10045.2.1): ECDSA P-256\n"+
			"  Signature:  ecdsa-with-SHA256 (1.2.840.10045.4.3.2): "+d.Signature.Detail+"\n"+
			"  Alt public key (2.5.29.72, critical): ML-DSA-44 (2.16.840.1.101.3.4.3.17): 1312-byte public key, NIST category 2\n"+
			"  Alt signature (2.5.29.73/.74, 2420 bytes): ML-DSA-44 (2.16.840.1.101.3.4.3.17): pure ML-DSA, empty context, 2420-byte signature\n",
			d.String())
	})

	t.Run("pure ML-DSA-87", func(t *testing.T) {
		d, err := pqc.Describe(parseCert(t, bc["ml-dsa-87-2.16.840.1.101.3.4.3.19_ta.der"]))
		require.NoError(t, err)
		require.Equal(t, pqc.ProfilePureMLDSA, d.Profile)
		require.Equal(t, pqc.FamilyMLDSA, d.PublicKey.Family)
		require.Equal(t, "2592-byte public key, NIST category 5", d.PublicKey.Detail)
		require.Equal(t, "pure ML-DSA, empty context, 4627-byte signature", d.Signature.Detail)
		require.Nil(t, d.AltPublicKey)
		require.Nil(t, d.AltSignature)
	})

	t.Run("composite MLDSA65-ECDSA-P256-SHA512", func(t *testing.T) {
		d, err := pqc.Describe(parseCert(t, ref["id-MLDSA65-ECDSA-P256-SHA512-1.3.6.1.5.5.7.6.45_ta.der"]))
		require.NoError(t, err)
		require.Equal(t, pqc.ProfileComposite, d.Profile)
		require.Equal(t, "MLDSA65-ECDSA-P256-SHA512", d.PublicKey.Name)
		require.Equal(t, "ML-DSA-65 (1952-byte key) + ECDSA P-256 with SHA-256 (65-byte key)", d.PublicKey.Detail)
		require.Contains(t, d.Signature.Detail, "pre-hash SHA-512, label COMPSIG-MLDSA65-ECDSA-P256-SHA512")
	})

	t.Run("composite with Ed448", func(t *testing.T) {
		d, err := pqc.Describe(parseCert(t, ref["id-MLDSA87-Ed448-SHAKE256-1.3.6.1.5.5.7.6.51_ta.der"]))
		require.NoError(t, err)
		require.Equal(t, "ML-DSA-87 (2592-byte key) + Ed448 (57-byte key)", d.PublicKey.Detail)
	})

	t.Run("HashML-DSA", func(t *testing.T) {
		d, err := pqc.Describe(parseCert(t, bc["ml-dsa-44-with-sha512-2.16.840.1.101.3.4.3.32_ta.der"]))
		require.NoError(t, err)
		require.Equal(t, pqc.ProfileHashMLDSA, d.Profile)
		require.Equal(t, "HashML-DSA-44-with-SHA512", d.Signature.Name)
	})
}

func TestOIDName_FallsBackToDottedForm(t *testing.T) {
	require.Equal(t, "altSignatureValue", pqc.OIDName(oid.AltSignatureValue))
	require.Equal(t, "1.2.3.4", pqc.OIDName([]int{1, 2, 3, 4}))
}

package certenc

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"os/exec"
	"testing"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/meshca/meshca/ca/oid"
)

// catalystChain is a classical P-256 root → intermediate → workload leaf
// where every certificate carries an ML-DSA-65 alternative signature.
type catalystChain struct {
	root, intermediate, leaf []byte
	intKey                   crypto.Signer
	rootAlt, intAlt          *mldsaSigner
}

func buildCatalystChain(t testing.TB) catalystChain {
	t.Helper()
	var ch catalystChain
	rootKey, intKey, leafKey := genKey(t, "P256"), genKey(t, "P256"), genKey(t, "P256")
	ch.intKey = intKey
	ch.rootAlt, ch.intAlt = newMLDSASigner(t), newMLDSASigner(t)

	rootSPKI := spkiOf(t, rootKey.Public())
	rootTmpl := rootTemplate(t, rootSPKI, "meshca catalyst root")
	var err error
	ch.root, err = BuildCatalyst(&Template{Certificate: rootTmpl, PublicKey: rootSPKI}, rootKey,
		Catalyst{Issuer: ch.rootAlt, SubjectPublicKey: ch.rootAlt.spki(t)}, rand.Reader)
	require.NoError(t, err)

	intSPKI := spkiOf(t, intKey.Public())
	intTmpl := intermediateTemplate(t, intSPKI, rootTmpl.SubjectKeyId)
	ch.intermediate, err = BuildCatalyst(&Template{Certificate: intTmpl, PublicKey: intSPKI, Issuer: rootTmpl.RawSubject}, rootKey,
		Catalyst{Issuer: ch.rootAlt, SubjectPublicKey: ch.intAlt.spki(t)}, rand.Reader)
	require.NoError(t, err)

	ch.leaf, err = BuildCatalyst(&Template{Certificate: workloadTemplate(t, intTmpl.SubjectKeyId), PublicKey: spkiOf(t, leafKey.Public()), Issuer: intTmpl.RawSubject}, intKey,
		Catalyst{Issuer: ch.intAlt}, rand.Reader)
	require.NoError(t, err)
	return ch
}

func parse(t testing.TB, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return c
}

// verifyAltSignature checks cert's Catalyst signature with the issuer's
// ML-DSA-65 key, straight from the definition: recompute the preTBS,
// check 2.5.29.73 names ML-DSA-65, verify 2.5.29.74 with an empty context.
func verifyAltSignature(t testing.TB, cert *x509.Certificate, issuerAltSPKI []byte) bool {
	t.Helper()
	algExt, ok := findExtension(cert, oid.AltSignatureAlgorithm)
	require.True(t, ok, "altSignatureAlgorithm present")
	var alg pkix.AlgorithmIdentifier
	rest, err := asn1.Unmarshal(algExt.Value, &alg)
	require.NoError(t, err)
	require.Empty(t, rest)
	require.True(t, alg.Algorithm.Equal(oidMLDSA65))
	require.Empty(t, alg.Parameters.FullBytes, "ML-DSA parameters are absent")

	sigExt, ok := findExtension(cert, oid.AltSignatureValue)
	require.True(t, ok, "altSignatureValue present")
	var sig asn1.BitString
	rest, err = asn1.Unmarshal(sigExt.Value, &sig)
	require.NoError(t, err)
	require.Empty(t, rest)
	require.Equal(t, 8*mldsa65.SignatureSize, sig.BitLength)

	var pk mldsa65.PublicKey
	keyBits, err := spkiKeyBits(issuerAltSPKI)
	require.NoError(t, err)
	require.NoError(t, pk.UnmarshalBinary(keyBits))

	pre, err := preTBS(cert.RawTBSCertificate)
	require.NoError(t, err)
	return mldsa65.Verify(&pk, pre, nil, sig.Bytes)
}

func altSPKIOf(t testing.TB, cert *x509.Certificate) []byte {
	t.Helper()
	ext, ok := findExtension(cert, oid.SubjectAltPublicKeyInfo)
	require.True(t, ok, "subjectAltPublicKeyInfo present on %s", cert.Subject)
	return ext.Value
}

func TestBuildCatalyst_ClassicalChainVerifiesInGoAndOpenSSLStrict(t *testing.T) {
	ch := buildCatalystChain(t)
	root, inter, leaf := parse(t, ch.root), parse(t, ch.intermediate), parse(t, ch.leaf)

	require.NoError(t, root.CheckSignatureFrom(root))
	require.NoError(t, inter.CheckSignatureFrom(root))
	require.NoError(t, leaf.CheckSignatureFrom(inter))
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root)
	inters.AddCert(inter)
	_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	require.NoError(t, err, "Go verifies the chain: the alt extensions are non-critical")

	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("SKIPPING OpenSSL CROSS-CHECK: no openssl binary on PATH")
	}
	dir := t.TempDir()
	rootPEM, intPEM := writePEM(t, dir, "root.pem", ch.root), writePEM(t, dir, "int.pem", ch.intermediate)
	leafPEM := writePEM(t, dir, "leaf.pem", ch.leaf)
	out, err := exec.Command(openssl, "verify", "-x509_strict", "-CAfile", rootPEM, "-untrusted", intPEM, leafPEM).CombinedOutput()
	require.NoError(t, err, "openssl verify: %s", out)
	require.Contains(t, string(out), "leaf.pem: OK")

	out, err = exec.Command(openssl, "verify", "-x509_strict", "-CAfile", rootPEM, intPEM).CombinedOutput()
	require.NoError(t, err, "openssl verify intermediate: %s", out)
}

func TestBuildCatalyst_AltSignatureVerifiesOverPreTBSWithIssuerAltKey(t *testing.T) {
	ch := buildCatalystChain(t)
	root, inter, leaf := parse(t, ch.root), parse(t, ch.intermediate), parse(t, ch.leaf)

	require.Equal(t, ch.rootAlt.spki(t), altSPKIOf(t, root))
	require.Equal(t, ch.intAlt.spki(t), altSPKIOf(t, inter))
	require.True(t, verifyAltSignature(t, root, altSPKIOf(t, root)), "root alt signature, self-issued")
	require.True(t, verifyAltSignature(t, inter, altSPKIOf(t, root)), "intermediate alt signature by root")
	require.True(t, verifyAltSignature(t, leaf, altSPKIOf(t, inter)), "leaf alt signature by intermediate")
	require.False(t, verifyAltSignature(t, leaf, altSPKIOf(t, root)), "leaf alt signature must not verify with the wrong key")
}

func TestBuildCatalyst_AnyFlippedByteBreaksTheAltSignature(t *testing.T) {
	ch := buildCatalystChain(t)
	leaf := parse(t, ch.leaf)
	intAlt := ch.intAlt.spki(t)
	var pk mldsa65.PublicKey
	keyBits, err := spkiKeyBits(intAlt)
	require.NoError(t, err)
	require.NoError(t, pk.UnmarshalBinary(keyBits))
	pre, err := preTBS(leaf.RawTBSCertificate)
	require.NoError(t, err)
	sigExt, _ := findExtension(leaf, oid.AltSignatureValue)
	var sig asn1.BitString
	_, err = asn1.Unmarshal(sigExt.Value, &sig)
	require.NoError(t, err)

	require.True(t, mldsa65.Verify(&pk, pre, nil, sig.Bytes))
	for _, i := range []int{0, 10, len(pre) / 2, len(pre) - 1} {
		require.False(t, mldsa65.Verify(&pk, flipByte(pre, i), nil, sig.Bytes), "preTBS byte %d flipped", i)
	}
	require.False(t, mldsa65.Verify(&pk, pre, nil, flipByte(sig.Bytes, 100)), "signature byte flipped")
	require.False(t, mldsa65.Verify(&pk, pre, []byte("ctx"), sig.Bytes), "signed with an empty context")

	// A flipped byte in the certificate's signed part breaks both signatures.
	tampered := append([]byte(nil), ch.leaf...)
	idx := bytes.Index(tampered, []byte("bookinfo"))
	require.Positive(t, idx)
	tampered[idx] ^= 0x20
	bad := parse(t, tampered)
	require.Error(t, bad.CheckSignatureFrom(parse(t, ch.intermediate)))
	require.False(t, verifyAltSignature(t, bad, intAlt))
}

func TestBuildCatalyst_AltExtensionsAreLastNonCriticalWithExactOIDs(t *testing.T) {
	ch := buildCatalystChain(t)
	for name, tc := range map[string]struct {
		der  []byte
		want []string
	}{
		"root":         {ch.root, []string{"2.5.29.72", "2.5.29.73", "2.5.29.74"}},
		"intermediate": {ch.intermediate, []string{"2.5.29.72", "2.5.29.73", "2.5.29.74"}},
		"leaf":         {ch.leaf, []string{"2.5.29.73", "2.5.29.74"}},
	} {
		t.Run(name, func(t *testing.T) {
			cert := parse(t, tc.der)
			exts := cert.Extensions
			require.Greater(t, len(exts), len(tc.want))
			tail := exts[len(exts)-len(tc.want):]
			for i, e := range tail {
				require.Equal(t, tc.want[i], e.Id.String())
				require.False(t, e.Critical, "%s must be non-critical", e.Id)
			}
			for _, e := range exts[:len(exts)-len(tc.want)] {
				require.NotContains(t, []string{"2.5.29.72", "2.5.29.73", "2.5.29.74"}, e.Id.String())
			}
			require.Empty(t, cert.UnhandledCriticalExtensions)
			require.Equal(t, x509.ECDSAWithSHA256, cert.SignatureAlgorithm)
		})
	}
	leaf := parse(t, ch.leaf)
	san, ok := findExtension(leaf, oid.SubjectAltName)
	require.True(t, ok)
	require.True(t, san.Critical, "empty subject makes the SAN critical")
}

func TestPreTBS_DropsSignatureFieldAndAltSignatureValueOnly(t *testing.T) {
	ch := buildCatalystChain(t)
	for _, der := range [][]byte{ch.root, ch.intermediate, ch.leaf} {
		cert := parse(t, der)
		pre, err := preTBS(cert.RawTBSCertificate)
		require.NoError(t, err)

		tbs := elements(t, cert.RawTBSCertificate)
		got := elements(t, pre)
		require.Len(t, got, len(tbs)-1, "one element (the signature field) fewer")
		require.Equal(t, tbs[0], got[0], "version")
		require.Equal(t, tbs[1], got[1], "serial")
		require.Equal(t, cert.RawIssuer, got[2], "issuer directly follows the serial")
		require.Equal(t, tbs[3:len(tbs)-1], got[2:len(got)-1], "issuer through subjectPublicKeyInfo unchanged")

		tbsExts, preExts := extensionsOf(t, tbs[len(tbs)-1]), extensionsOf(t, got[len(got)-1])
		require.Len(t, preExts, len(tbsExts)-1)
		require.Equal(t, tbsExts[:len(tbsExts)-1], preExts, "every extension but .74 kept, in order")
		for _, e := range preExts {
			id, err := extensionOID(e)
			require.NoError(t, err)
			require.False(t, id.Equal(oid.AltSignatureValue))
		}
	}
}

func TestPreTBS_RejectsTBSWithoutAltSignatureValue(t *testing.T) {
	key := genKey(t, "P256")
	spki := spkiOf(t, key.Public())
	der, err := Build(&Template{Certificate: rootTemplate(t, spki, "plain"), PublicKey: spki}, key, rand.Reader)
	require.NoError(t, err)
	_, err = preTBS(parse(t, der).RawTBSCertificate)
	require.ErrorContains(t, err, "no altSignatureValue")
	_, err = preTBS([]byte{0x30, 0x03, 0x02, 0x01, 0x01})
	require.Error(t, err)
}

func TestBuildCatalyst_RejectsPQPrimaryIssuerAndDuplicateAltExtensions(t *testing.T) {
	key, alt := genKey(t, "P256"), newMLDSASigner(t)
	spki := spkiOf(t, key.Public())
	tmpl := &Template{Certificate: rootTemplate(t, spki, "root"), PublicKey: spki}

	_, err := BuildCatalyst(tmpl, alt, Catalyst{Issuer: alt}, rand.Reader)
	require.ErrorContains(t, err, "classical primary")
	_, err = BuildCatalyst(tmpl, key, Catalyst{}, rand.Reader)
	require.ErrorContains(t, err, "alternative issuer")
	_, err = BuildCatalyst(tmpl, key, Catalyst{Issuer: alt, SubjectPublicKey: []byte{1, 2, 3}}, rand.Reader)
	require.ErrorContains(t, err, "SubjectPublicKeyInfo")

	tmpl.Certificate.ExtraExtensions = []pkix.Extension{{Id: oid.AltSignatureAlgorithm, Value: []byte{0x05, 0x00}}}
	_, err = BuildCatalyst(tmpl, key, Catalyst{Issuer: alt}, rand.Reader)
	require.ErrorContains(t, err, "already carries Catalyst extension")
}

// elements splits a DER SEQUENCE into its elements.
func elements(t testing.TB, der []byte) [][]byte {
	t.Helper()
	s := cryptobyte.String(der)
	var body cryptobyte.String
	require.True(t, s.ReadASN1(&body, cbasn1.SEQUENCE) && s.Empty())
	var out [][]byte
	for !body.Empty() {
		var e cryptobyte.String
		var tag cbasn1.Tag
		require.True(t, body.ReadAnyASN1Element(&e, &tag))
		out = append(out, e)
	}
	return out
}

// extensionsOf splits the [3] Extensions element of a TBS.
func extensionsOf(t testing.TB, wrapped []byte) [][]byte {
	t.Helper()
	s := cryptobyte.String(wrapped)
	var inner cryptobyte.String
	require.True(t, s.ReadASN1(&inner, cbasn1.Tag(3).Constructed().ContextSpecific()))
	return elements(t, inner)
}

var _ AlgorithmSigner = (*mldsaSigner)(nil)

// extensionOID reads the extnID of one DER Extension.
func extensionOID(ext []byte) (asn1.ObjectIdentifier, error) {
	e, err := parseExtension(ext)
	return e.ID, err
}

package certenc

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"io"
	"os/exec"
	"testing"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/stretchr/testify/require"
)

// mldsa65AlgorithmDER is AlgorithmIdentifier { id-ml-dsa-65 } with the
// parameters absent, as RFC 9881 requires.
const mldsa65AlgorithmDER = "300b0609608648016503040312"

// mldsaChain is a pure ML-DSA-65 root and an ECDSA P-256 workload leaf it
// signs.
type mldsaChain struct {
	root, leaf []byte
	rootKey    *mldsaSigner
}

func buildMLDSAChain(t testing.TB) mldsaChain {
	t.Helper()
	rootKey := newMLDSASigner(t)
	rootSPKI := rootKey.spki(t)
	rootTmpl := rootTemplate(t, rootSPKI, "meshca ML-DSA-65 root")
	root, err := Build(&Template{Certificate: rootTmpl, PublicKey: rootSPKI}, rootKey, rand.Reader)
	require.NoError(t, err)

	leafKey := genKey(t, "P256")
	leaf, err := Build(&Template{Certificate: workloadTemplate(t, rootTmpl.SubjectKeyId), PublicKey: spkiOf(t, leafKey.Public()), Issuer: rootTmpl.RawSubject},
		rootKey, rand.Reader)
	require.NoError(t, err)
	return mldsaChain{root: root, leaf: leaf, rootKey: rootKey}
}

// outer splits a DER Certificate into its three fields.
func outer(t testing.TB, der []byte) (tbs, alg []byte, sig asn1.BitString) {
	t.Helper()
	var c struct {
		TBS asn1.RawValue
		Alg asn1.RawValue
		Sig asn1.BitString
	}
	rest, err := asn1.Unmarshal(der, &c)
	require.NoError(t, err)
	require.Empty(t, rest)
	return c.TBS.FullBytes, c.Alg.FullBytes, c.Sig
}

func TestBuild_PureMLDSACertificatesVerifyWithCircl(t *testing.T) {
	ch := buildMLDSAChain(t)
	for name, der := range map[string][]byte{"root": ch.root, "leaf": ch.leaf} {
		t.Run(name, func(t *testing.T) {
			tbs, alg, sig := outer(t, der)
			require.Equal(t, mldsa65AlgorithmDER, hex.EncodeToString(alg), "outer signatureAlgorithm")
			require.Equal(t, mldsa65AlgorithmDER, hex.EncodeToString(elements(t, tbs)[2]), "TBS signature field")
			require.Equal(t, 8*mldsa65.SignatureSize, sig.BitLength)
			require.True(t, mldsa65.Verify(ch.rootKey.pk, tbs, nil, sig.Bytes), "raw signature over the DER TBS, empty context")
			require.False(t, mldsa65.Verify(ch.rootKey.pk, flipByte(tbs, len(tbs)-5), nil, sig.Bytes))
			require.False(t, mldsa65.Verify(ch.rootKey.pk, tbs, nil, flipByte(sig.Bytes, 7)))

			// Go 1.26 cannot check ML-DSA but must parse the structure.
			cert := parse(t, der)
			require.Equal(t, x509.UnknownSignatureAlgorithm, cert.SignatureAlgorithm)
			require.Equal(t, tbs, cert.RawTBSCertificate)
		})
	}
	root := parse(t, ch.root)
	require.Equal(t, ch.rootKey.spki(t), root.RawSubjectPublicKeyInfo)
}

// TestBuild_MLDSACertificateParsesInOpenSSL checks only the structure:
// OpenSSL 3.0 (Debian bookworm) does not know ML-DSA, so it prints the
// OIDs and cannot check the signature; OpenSSL 3.5+ would.
func TestBuild_MLDSACertificateParsesInOpenSSL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("SKIPPING OpenSSL PARSE CHECK: no openssl binary on PATH")
	}
	ch := buildMLDSAChain(t)
	dir := t.TempDir()
	for _, f := range []string{writePEM(t, dir, "root.pem", ch.root), writePEM(t, dir, "leaf.pem", ch.leaf)} {
		out, err := exec.Command(openssl, "x509", "-in", f, "-noout", "-text").CombinedOutput()
		require.NoError(t, err, "openssl x509 -text: %s", out)
		require.Contains(t, string(out), "Signature Algorithm:")
		require.Regexp(t, `2\.16\.840\.1\.101\.3\.4\.3\.18|ML-DSA-65|id-ml-dsa-65`, string(out))
	}
}

// recordingSigner stands in for ca/pqc's composite signer: it records
// what certenc hands it and returns a fixed "signature".
type recordingSigner struct {
	pub       crypto.PublicKey
	alg       pkix.AlgorithmIdentifier
	gotMsg    []byte
	gotOpts   crypto.SignerOpts
	signature []byte
}

func (r *recordingSigner) Public() crypto.PublicKey { return r.pub }
func (r *recordingSigner) Sign(_ io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	r.gotMsg, r.gotOpts = append([]byte(nil), msg...), opts
	if r.signature == nil {
		return nil, errors.New("signer failed")
	}
	return r.signature, nil
}
func (r *recordingSigner) SignatureAlgorithm() pkix.AlgorithmIdentifier { return r.alg }

func TestBuild_AlgorithmSignerSignsWholeTBSWithNoHashAndNamesTheAlgorithm(t *testing.T) {
	// id-MLDSA65-ECDSA-P256-SHA512, draft-ietf-lamps-pq-composite-sigs-19.
	composite := pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 6, 45}}
	s := &recordingSigner{pub: "composite key", alg: composite, signature: []byte("mldsaSig||ecdsaSig")}
	leafKey := genKey(t, "P256")
	tmpl := &Template{Certificate: workloadTemplate(t, []byte{1, 2, 3}), PublicKey: spkiOf(t, leafKey.Public()), Issuer: name(t, "composite CA")}

	der, err := Build(tmpl, s, rand.Reader)
	require.NoError(t, err)
	tbs, alg, sig := outer(t, der)
	require.Equal(t, tbs, s.gotMsg, "the whole DER TBS, not a digest")
	require.Equal(t, crypto.Hash(0), s.gotOpts.HashFunc())
	require.Equal(t, "300a06082b0601050507062d", hex.EncodeToString(alg), "composite OID .45, parameters absent")
	require.Equal(t, alg, elements(t, tbs)[2], "TBS signature field equals signatureAlgorithm")
	require.Equal(t, []byte("mldsaSig||ecdsaSig"), sig.Bytes)

	got, err := SignatureAlgorithmOf(s)
	require.NoError(t, err)
	require.Equal(t, composite, got)

	s.signature = nil
	_, err = Build(tmpl, s, rand.Reader)
	require.ErrorContains(t, err, "signer failed")
}

func TestSign_SignsABuiltTBSAndRejectsAMismatchedSigner(t *testing.T) {
	issuer, other := genKey(t, "P384"), genKey(t, "P256")
	spki := spkiOf(t, issuer.Public())
	c := rootTemplate(t, spki, "two-step root")
	alg, err := SignatureAlgorithmOf(issuer)
	require.NoError(t, err)
	tbs, err := BuildTBS(&Template{Certificate: c, PublicKey: spki}, alg)
	require.NoError(t, err)

	der, err := Sign(tbs, issuer, rand.Reader)
	require.NoError(t, err)
	cert := parse(t, der)
	require.Equal(t, x509.ECDSAWithSHA384, cert.SignatureAlgorithm)
	require.NoError(t, cert.CheckSignatureFrom(cert))

	_, err = Sign(tbs, other, rand.Reader)
	require.ErrorContains(t, err, "does not match")
	_, err = Sign(tbs, newMLDSASigner(t), rand.Reader)
	require.ErrorContains(t, err, "does not match")
}

func TestSignatureAlgorithmOf_PicksGoDefaultsForClassicalKeys(t *testing.T) {
	for kind, want := range map[string]string{
		"P256":    "300a06082a8648ce3d040302",
		"P384":    "300a06082a8648ce3d040303",
		"P521":    "300a06082a8648ce3d040304",
		"RSA2048": "300d06092a864886f70d01010b0500", // NULL parameters
		"Ed25519": "300506032b6570",
	} {
		alg, err := SignatureAlgorithmOf(genKey(t, kind))
		require.NoError(t, err)
		der, err := asn1.Marshal(alg)
		require.NoError(t, err)
		require.Equal(t, want, hex.EncodeToString(der), kind)
	}
}

func TestBuild_RejectsInvalidTemplates(t *testing.T) {
	key := genKey(t, "P256")
	spki := spkiOf(t, key.Public())
	for name, tc := range map[string]struct {
		mutate func(*Template)
		want   string
	}{
		"no certificate":    {func(tp *Template) { tp.Certificate = nil }, "no Certificate"},
		"no serial":         {func(tp *Template) { tp.Certificate.SerialNumber = nil }, "SerialNumber is required"},
		"negative serial":   {func(tp *Template) { tp.Certificate.SerialNumber.Neg(tp.Certificate.SerialNumber) }, "positive"},
		"21-octet serial":   {func(tp *Template) { tp.Certificate.SerialNumber.Lsh(tp.Certificate.SerialNumber, 40) }, "20 octets"},
		"inverted validity": {func(tp *Template) { tp.Certificate.NotAfter = tp.Certificate.NotBefore.Add(-1) }, "before NotBefore"},
		"garbage SPKI":      {func(tp *Template) { tp.PublicKey = []byte{0x30, 0x00} }, "SubjectPublicKeyInfo"},
		"garbage issuer":    {func(tp *Template) { tp.Issuer = []byte{0x04, 0x00} }, "issuer name"},
		"leaf with pathlen": {func(tp *Template) { tp.Certificate.IsCA, tp.Certificate.MaxPathLen = false, 1 }, "only CAs"},
		"policies":          {func(tp *Template) { tp.Certificate.PolicyIdentifiers = []asn1.ObjectIdentifier{{2, 5, 29, 32, 0}} }, "policies"},
		"name constraints":  {func(tp *Template) { tp.Certificate.PermittedDNSDomains = []string{"example.com"} }, "name constraints"},
		"non-ASCII DNS SAN": {func(tp *Template) { tp.Certificate.DNSNames = []string{"bücher.example"} }, "IA5String"},
		"duplicate extension": {func(tp *Template) {
			tp.Certificate.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 2, 3}}, {Id: asn1.ObjectIdentifier{1, 2, 3}}}
		}, "appears twice"},
		"other sig algorithm":  {func(tp *Template) { tp.Certificate.SignatureAlgorithm = x509.ECDSAWithSHA384 }, "does not match"},
		"unsupported sig alg":  {func(tp *Template) { tp.Certificate.SignatureAlgorithm = x509.SHA256WithRSAPSS }, "not supported"},
		"year 10000 not after": {func(tp *Template) { tp.Certificate.NotAfter = tp.Certificate.NotAfter.AddDate(8000, 0, 0) }, "cannot be encoded"},
	} {
		t.Run(name, func(t *testing.T) {
			tp := &Template{Certificate: rootTemplate(t, spki, "root"), PublicKey: spki}
			tc.mutate(tp)
			_, err := Build(tp, key, rand.Reader)
			require.ErrorContains(t, err, tc.want)
		})
	}

	ok := &Template{Certificate: rootTemplate(t, spki, "root"), PublicKey: spki}
	ok.Certificate.SignatureAlgorithm = x509.ECDSAWithSHA256
	_, err := Build(ok, key, rand.Reader)
	require.NoError(t, err, "naming the algorithm the key implies is fine")
}

func TestBuild_RejectsUnsupportedIssuerKeys(t *testing.T) {
	spki := spkiOf(t, genKey(t, "P256").Public())
	tp := &Template{Certificate: rootTemplate(t, spki, "root"), PublicKey: spki}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	require.NoError(t, err)
	_, err = Build(tp, p224, rand.Reader)
	require.ErrorContains(t, err, "unsupported ECDSA curve")
	_, err = Build(tp, &recordingSigner{pub: "pq key"}, rand.Reader)
	require.ErrorContains(t, err, "empty signature AlgorithmIdentifier")
	_, err = Build(tp, nil, rand.Reader)
	require.ErrorContains(t, err, "no issuer signer")
}

func TestBuild_RejectsABadSignatureFromAnAlgorithmSigner(t *testing.T) {
	key := genKey(t, "P256")
	spki := spkiOf(t, key.Public())
	alt := newMLDSASigner(t)
	alt.faulty = true

	_, err := Build(&Template{Certificate: rootTemplate(t, alt.spki(t), "root"), PublicKey: alt.spki(t)}, alt, rand.Reader)
	require.ErrorContains(t, err, "signature returned by signer is invalid")
	_, err = BuildCatalyst(&Template{Certificate: rootTemplate(t, spki, "root"), PublicKey: spki}, key, Catalyst{Issuer: alt}, rand.Reader)
	require.ErrorContains(t, err, "alternative signature: certenc: signature returned by signer is invalid")
}

package pqc_test

import (
	"crypto/x509"
	"regexp"
	"strings"
	"testing"

	"github.com/meshca/meshca/ca/pqc"
	"github.com/meshca/meshca/ca/pqc/composite"
	"github.com/meshca/meshca/ca/pqc/internal/pqctest"
	"github.com/meshca/meshca/ca/pqc/mldsa"
	"github.com/stretchr/testify/require"
)

// IETF hackathon round-5 artifacts (see ../shared/testdata/pqc/README.md).

var pureMLDSATA = regexp.MustCompile(`^(id-)?(ml-dsa|ML-DSA)-(44|65|87)-2\.16\.840\.1\.101\.3\.4\.3\.(17|18|19)_ta\.der$`)

func parseCert(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return c
}

// verifySelfSigned checks a self-signed PQ trust anchor both directly and
// as a one-certificate chain anchored at itself.
func verifySelfSigned(t *testing.T, cert *x509.Certificate) {
	t.Helper()
	require.NoError(t, pqc.VerifyCertificateSignature(cert, cert.RawSubjectPublicKeyInfo))
	anchor, err := pqc.AnchorFromCertificate(cert)
	require.NoError(t, err)
	require.NoError(t, pqc.VerifyChain([]*x509.Certificate{cert}, anchor))
}

func TestVerifyCertificateSignature_PureMLDSATrustAnchorsFromFourProducers(t *testing.T) {
	total := 0
	for _, provider := range []string{"ossl35", "bc", "carl-redhound", "composite-sigs-ref-impl"} {
		archive := pqctest.Zip(t, provider)
		names := archive.Names(pureMLDSATA.MatchString)
		require.Len(t, names, 3, "%s: ML-DSA-44/65/87 trust anchors", provider)
		for _, name := range names {
			t.Run(provider+"/"+name, func(t *testing.T) {
				verifySelfSigned(t, parseCert(t, archive[name]))
			})
			total++
		}
	}
	require.Equal(t, 12, total)
}

func TestVerifyCertificateSignature_RejectsHashMLDSATrustAnchors(t *testing.T) {
	total := 0
	for _, provider := range []string{"bc", "carl-redhound"} {
		archive := pqctest.Zip(t, provider)
		names := archive.Names(func(n string) bool {
			return strings.HasPrefix(n, "ml-dsa-") && strings.Contains(n, "-with-sha512-") && strings.HasSuffix(n, "_ta.der")
		})
		require.Len(t, names, 3, provider)
		for _, name := range names {
			t.Run(provider+"/"+name, func(t *testing.T) {
				cert := parseCert(t, archive[name])
				require.ErrorIs(t, pqc.VerifyCertificateSignature(cert, cert.RawSubjectPublicKeyInfo), mldsa.ErrHashMLDSA)
			})
			total++
		}
	}
	require.Equal(t, 6, total)
}

// Composite trust anchors from the draft's reference implementation and
// from Bouncy Castle: all 18 algorithms verify, brainpool ECDSA and Ed448
// included.
func TestVerifyCertificateSignature_CompositeTrustAnchors(t *testing.T) {
	for _, provider := range []string{"composite-sigs-ref-impl", "bc"} {
		t.Run(provider, func(t *testing.T) {
			archive := pqctest.Zip(t, provider)
			names := archive.Names(func(n string) bool {
				return strings.Contains(n, "-1.3.6.1.5.5.7.6.") && strings.HasSuffix(n, "_ta.der") && strings.Contains(n, "MLDSA")
			})
			require.Len(t, names, 18)
			verified := 0
			for _, name := range names {
				cert := parseCert(t, archive[name])
				alg, ok := composite.AlgorithmByOID(mustSignatureOID(t, cert))
				require.True(t, ok, name)
				require.Contains(t, name, alg.Name(), "file name and signature OID agree")
				require.NoError(t, pqc.VerifyCertificateSignature(cert, cert.RawSubjectPublicKeyInfo), name)
				verifySelfSigned(t, cert)
				verified++
			}
			require.Equal(t, 18, verified)
		})
	}
}

func mustSignatureOID(t *testing.T, cert *x509.Certificate) []int {
	t.Helper()
	d, err := pqc.Describe(cert)
	require.NoError(t, err)
	return d.Signature.OID
}

// Bouncy Castle's three Catalyst trust anchors: the alternative ML-DSA
// signature verifies over the preTBSCertificate with the certificate's own
// 2.5.29.72 key (marked critical by BC), and the classical signature still
// verifies with crypto/x509.
func TestVerifyAltSignature_BouncyCastleCatalystTrustAnchors(t *testing.T) {
	archive := pqctest.Zip(t, "bc")
	tests := map[string]struct {
		file   string
		altAlg string
	}{
		"ECDSA P-256 with ML-DSA-44": {"catalyst_1.2.840.10045.4.3.2_with_2.16.840.1.101.3.4.3.17_ta.der", "ML-DSA-44"},
		"ECDSA P-521 with ML-DSA-87": {"catalyst_1.2.840.10045.4.3.4_with_2.16.840.1.101.3.4.3.19_ta.der", "ML-DSA-87"},
		"RSA with ML-DSA-44":         {"catalyst_1.2.840.113549.1.1.11_with_2.16.840.1.101.3.4.3.17_ta.der", "ML-DSA-44"},
	}
	require.Len(t, archive.Names(func(n string) bool { return strings.HasPrefix(n, "catalyst_") }), len(tests))
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cert := parseCert(t, archive[tc.file])
			c, err := pqc.ParseCatalyst(cert)
			require.NoError(t, err)
			require.True(t, c.HasAltSignature())
			require.True(t, c.SubjectAltPublicKeyCritical, "BC marks 2.5.29.72 critical")
			require.Equal(t, tc.altAlg, pqc.OIDName(c.AltSignatureAlgorithm.Algorithm))

			require.NoError(t, pqc.VerifyAltSignature(cert, c.SubjectAltPublicKeyInfo))
			require.NoError(t, cert.CheckSignatureFrom(cert), "classical signature")
			anchor, err := pqc.AnchorFromCertificate(cert)
			require.NoError(t, err)
			require.Equal(t, c.SubjectAltPublicKeyInfo, anchor.PublicKeyInfo())
			require.NoError(t, pqc.VerifyChain([]*x509.Certificate{cert}, anchor))

			// The primary signature is classical: not ours to verify.
			require.ErrorIs(t, pqc.VerifyCertificateSignature(cert, cert.RawSubjectPublicKeyInfo), pqc.ErrNotPostQuantum)
		})
	}
}

// Carl Redhound's ECDSA composites encode the EC point compressed, which
// draft-19 forbids: all five are rejected for exactly that reason.
func TestVerify_RejectsCompressedECPointComposite(t *testing.T) {
	archive := pqctest.Zip(t, "carl-redhound")
	names := archive.Names(func(n string) bool { return strings.Contains(n, "-ecdsa-") && strings.HasSuffix(n, "_ta.der") })
	require.Equal(t, []string{
		"ml-dsa-44-ecdsa-p256-1.3.6.1.5.5.7.6.40_ta.der",
		"ml-dsa-65-ecdsa-p256-1.3.6.1.5.5.7.6.45_ta.der",
		"ml-dsa-65-ecdsa-p384-1.3.6.1.5.5.7.6.46_ta.der",
		"ml-dsa-87-ecdsa-p384-1.3.6.1.5.5.7.6.49_ta.der",
		"ml-dsa-87-ecdsa-p521-1.3.6.1.5.5.7.6.54_ta.der",
	}, names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			cert := parseCert(t, archive[name])
			_, err := pqc.ParsePKIXPublicKey(cert.RawSubjectPublicKeyInfo)
			require.ErrorIs(t, err, composite.ErrCompressedPoint)
			require.ErrorIs(t, pqc.VerifyCertificateSignature(cert, cert.RawSubjectPublicKeyInfo), composite.ErrCompressedPoint)
			_, err = pqc.AnchorFromCertificate(cert)
			require.ErrorIs(t, err, composite.ErrCompressedPoint)
		})
	}
}

// Carl Redhound's RSA composites follow draft-19 and verify, except the
// file named for MLDSA87-RSA4096-PSS-SHA512 (.53): it is labelled with the
// MLDSA87-RSA3072-PSS-SHA512 OID (.52) but carries a 4096-bit RSA key, so
// it is rejected as a malformed key.
func TestVerifyCertificateSignature_CarlRedhoundRSAComposites(t *testing.T) {
	archive := pqctest.Zip(t, "carl-redhound")
	names := archive.Names(func(n string) bool { return strings.Contains(n, "-rsa") && strings.HasSuffix(n, "_ta.der") })
	require.Len(t, names, 7)
	const mislabelled = "ml-dsa-87-rsa4096-pss-1.3.6.1.5.5.7.6.53_ta.der"
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			cert := parseCert(t, archive[name])
			err := pqc.VerifyCertificateSignature(cert, cert.RawSubjectPublicKeyInfo)
			if name == mislabelled {
				require.ErrorIs(t, err, composite.ErrMalformedPublicKey)
				require.ErrorContains(t, err, "MLDSA87-RSA3072-PSS-SHA512: RSA modulus is 4096 bits, want 3072")
				return
			}
			require.NoError(t, err)
		})
	}
}

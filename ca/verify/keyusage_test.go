package verify_test

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/certenc"
	"github.com/meshca/meshca/ca/pqc"
	"github.com/meshca/meshca/ca/verify"
)

var oidKeyUsage = asn1.ObjectIdentifier{2, 5, 29, 15}

func hasKeyUsageExtension(c *x509.Certificate) bool {
	for _, e := range c.Extensions {
		if e.Id.Equal(oidKeyUsage) {
			return true
		}
	}
	return false
}

// Trust anchors of two further producers of the IETF hackathon's r5
// artifacts (see testdata/hackathon-r5/README.md). They are CAs
// (basicConstraints cA TRUE) without a keyUsage extension, which RFC 5280
// section 4.2.1.3 allows: key usage is restricted only when the extension
// is present. `meshca verify --pq` must accept them as it accepts the
// producers' anchors that do carry keyUsage.
func TestChain_PQTrustAnchorsWithoutKeyUsageExtensionVerify(t *testing.T) {
	// Inside every anchor's validity window (the earliest ends in 2029).
	at := time.Date(2027, time.January, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct{ file, subject, kind, alg string }{
		{"cryptonext_ML-DSA-44-2.16.840.1.101.3.4.3.17_ta.der", "CN=CryptoNext ML-DSA-44_ta", "signature", "ML-DSA-44"},
		{"entrust_MLDSA44-Ed25519-SHA512-1.3.6.1.5.5.7.6.39_ta.der", "OU=Composite Test CA,O=Entrust,C=CA", "composite signature (both components)", "MLDSA44-Ed25519-SHA512"},
		{"entrust_MLDSA87-Ed448-SHAKE256-1.3.6.1.5.5.7.6.51_ta.der", "OU=Composite Test CA,O=Entrust,C=CA", "composite signature (both components)", "MLDSA87-Ed448-SHAKE256"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			der, err := os.ReadFile(filepath.Join("testdata", "hackathon-r5", tc.file))
			require.NoError(t, err)
			ta, err := x509.ParseCertificate(der)
			require.NoError(t, err)
			require.True(t, ta.BasicConstraintsValid && ta.IsCA, "the anchor is a CA")
			require.False(t, hasKeyUsageExtension(ta), "the anchor has no keyUsage extension")

			rep := verify.Chain([]*x509.Certificate{ta}, verify.Options{Roots: []*x509.Certificate{ta}, PQ: true, Now: at})
			require.NoError(t, rep.Err())
			require.Equal(t, []string{
				"skip classical chain (Go crypto/x509)",
				"ok pq: validity periods and CA constraints",
				"ok pq: chain[0] (" + tc.subject + ") " + tc.kind + " (" + tc.alg + `) by trusted anchor "` + tc.subject + `"`,
				"ok pq: chain anchored at a trusted post-quantum key (1 trusted; pqc.VerifyChain)",
			}, names(rep))
			require.True(t, rep.PostQuantum)
		})
	}
}

// A keyUsage extension that is present restricts the key (RFC 5280
// sections 4.2.1.3 and 6.1.4 (n)): a CA whose keyUsage lacks keyCertSign,
// and a certificate that is not a CA at all, still cannot issue.
func TestChain_PQIssuerWithKeyUsageButNoKeyCertSignIsRefused(t *testing.T) {
	for name, tc := range map[string]struct {
		ku      x509.KeyUsage
		isCA    bool
		wantErr string
	}{
		"keyUsage without keyCertSign": {x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign, true, "pq: validity periods and CA constraints: chain[1] has a keyUsage extension without keyCertSign (RFC 5280 4.2.1.3)"},
		"not a CA, no keyUsage":        {0, false, "pq: validity periods and CA constraints: chain[1] is not a CA (basicConstraints cA is not TRUE)"},
	} {
		t.Run(name, func(t *testing.T) {
			key := pq(t, "ML-DSA-44")
			spki, err := pqc.MarshalPKIXPublicKey(key.Public())
			require.NoError(t, err)
			tmpl := &x509.Certificate{
				SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "no keyCertSign"},
				NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
				BasicConstraintsValid: true, IsCA: tc.isCA, KeyUsage: tc.ku,
			}
			der, err := certenc.Build(&certenc.Template{Certificate: tmpl, PublicKey: spki}, key, rand.Reader)
			require.NoError(t, err)
			ca, err := x509.ParseCertificate(der)
			require.NoError(t, err)
			rep := verify.Chain([]*x509.Certificate{ca}, verify.Options{Roots: []*x509.Certificate{ca}, PQ: true, Now: now})
			require.EqualError(t, rep.Err(), tc.wantErr)
			require.False(t, rep.PostQuantum)
		})
	}
}

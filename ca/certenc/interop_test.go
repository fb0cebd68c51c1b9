package certenc

import (
	"archive/zip"
	"crypto/x509/pkix"
	"encoding/asn1"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloudflare/circl/sign"
	"github.com/cloudflare/circl/sign/mldsa/mldsa44"
	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/cloudflare/circl/sign/mldsa/mldsa87"
	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/oid"
)

// pqcTestdata is ../shared/testdata/pqc seen from the repository root.
var pqcTestdata = filepath.Join("..", "..", "..", "shared", "testdata", "pqc")

func mldsaScheme(oid asn1.ObjectIdentifier) sign.Scheme {
	for _, s := range []sign.Scheme{mldsa44.Scheme(), mldsa65.Scheme(), mldsa87.Scheme()} {
		if s.(interface{ Oid() asn1.ObjectIdentifier }).Oid().Equal(oid) {
			return s
		}
	}
	return nil
}

// TestPreTBS_VerifiesBouncyCastleCatalystTrustAnchors checks preTBS
// against an independent producer: Bouncy Castle's self-signed Catalyst
// trust anchors from the IETF hackathon (round 5). Their ML-DSA-44/87
// alternative signatures must verify over our preTBS with the key in
// their own 2.5.29.72, and must fail once the preTBS is altered.
func TestPreTBS_VerifiesBouncyCastleCatalystTrustAnchors(t *testing.T) {
	zipPath := filepath.Join(pqcTestdata, "hackathon-r5", "bc.zip")
	zr, err := zip.OpenReader(zipPath)
	// The shared test data sits beside the checkout (../shared); without it
	// the independent interop check cannot run, which is a failure.
	require.NoError(t, err, "Bouncy Castle Catalyst artifacts missing: %s must exist (../shared/testdata beside the checkout)", zipPath)
	defer zr.Close()

	checked := 0
	for _, f := range zr.File {
		base := filepath.Base(f.Name)
		if !strings.HasPrefix(base, "catalyst_") || !strings.HasSuffix(base, "_ta.der") {
			continue
		}
		t.Run(base, func(t *testing.T) {
			rc, err := f.Open()
			require.NoError(t, err)
			der, err := io.ReadAll(rc)
			require.NoError(t, rc.Close())
			require.NoError(t, err)
			cert := parse(t, der)

			algExt, ok := findExtension(cert, oid.AltSignatureAlgorithm)
			require.True(t, ok)
			var alg pkix.AlgorithmIdentifier
			_, err = asn1.Unmarshal(algExt.Value, &alg)
			require.NoError(t, err)
			scheme := mldsaScheme(alg.Algorithm)
			require.NotNil(t, scheme, "alt algorithm %v", alg.Algorithm)

			keyBits, err := spkiKeyBits(altSPKIOf(t, cert))
			require.NoError(t, err)
			pk, err := scheme.UnmarshalBinaryPublicKey(keyBits)
			require.NoError(t, err)
			sigExt, ok := findExtension(cert, oid.AltSignatureValue)
			require.True(t, ok)
			var sig asn1.BitString
			_, err = asn1.Unmarshal(sigExt.Value, &sig)
			require.NoError(t, err)

			pre, err := preTBS(cert.RawTBSCertificate)
			require.NoError(t, err)
			require.True(t, scheme.Verify(pk, pre, sig.Bytes, nil), "BC alt signature verifies over our preTBS")
			require.False(t, scheme.Verify(pk, flipByte(pre, len(pre)/3), sig.Bytes, nil))
			require.False(t, scheme.Verify(pk, cert.RawTBSCertificate, sig.Bytes, nil), "the full TBS is not what is signed")
		})
		checked++
	}
	require.Equal(t, 3, checked, "bc.zip holds three Catalyst trust anchors")
}

package crl_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"os/exec"
	"testing"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/certenc"
	"github.com/meshca/meshca/ca/pqc/composite"
	"github.com/meshca/meshca/crl"
	"github.com/meshca/meshca/test/pqverifier"
)

// certificateList is the outer SEQUENCE of RFC 5280 section 5.1.
type certificateList struct {
	TBS       asn1.RawValue
	Algorithm pkix.AlgorithmIdentifier
	Signature asn1.BitString
}

func splitCRL(t *testing.T, der []byte) certificateList {
	t.Helper()
	var cl certificateList
	rest, err := asn1.Unmarshal(der, &cl)
	require.NoError(t, err)
	require.Empty(t, rest)
	return cl
}

func fullCRL(t *testing.T, ca *buildCA) []byte {
	t.Helper()
	der, err := crl.Build(crl.Params{Issuer: ca.cert, Number: 42, ThisUpdate: thisUpdate, NextUpdate: nextUpdate},
		entriesOf(sampleEntries()...), ca.signer())
	require.NoError(t, err)
	return der
}

// resignCatalyst flips an octet inside altSignatureValue (the last
// extension: the last 3309 octets of the TBSCertList are the ML-DSA-65
// signature) and signs the TBS again with the
// classical key: a CRL whose only fault is its alternative signature.
func resignCatalyst(t *testing.T, ca *buildCA, der []byte) []byte {
	t.Helper()
	cl := splitCRL(t, der)
	tbs := bytes.Clone(cl.TBS.FullBytes)
	tbs[len(tbs)-1000] ^= 1
	h := sha256.Sum256(tbs)
	sig, err := ca.key.Signer.(*ecdsa.PrivateKey).Sign(rand.Reader, h[:], crypto.SHA256)
	require.NoError(t, err)
	out, err := asn1.Marshal(certificateList{TBS: asn1.RawValue{FullBytes: tbs}, Algorithm: cl.Algorithm, Signature: asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}})
	require.NoError(t, err)
	return out
}

// Go 1.27's crypto/x509 and crypto/mldsa (test/pqverify, which shares no
// code with meshca and derives the preTBSCertList on its own) verify the
// classical, Catalyst (both signatures) and pure ML-DSA CRLs.
func TestBuild_IndependentlyVerifiedByGo127(t *testing.T) {
	bin := pqverifier.Build(t, "Catalyst alternative signatures and ML-DSA signatures on CRLs are then checked only by circl and ca/pqc/composite.")
	dir := t.TempDir()
	run := func(issuer *x509.Certificate, der []byte, name string) (string, error) {
		out, err := exec.Command(bin, "crl", writeFile(t, dir, name+"-issuer.der", issuer.Raw), writeFile(t, dir, name+".der", der)).CombinedOutput()
		t.Logf("pqverify crl %s:\n%s", name, out)
		return string(out), err
	}
	for profile, wantAlg := range map[string]string{"classical": "ECDSA-SHA256", "catalyst": "ECDSA-SHA256", "mldsa": "ML-DSA-65"} {
		t.Run(profile, func(t *testing.T) {
			ca := newBuildCA(t, profile)
			der := fullCRL(t, ca)
			out, err := run(ca.cert, der, profile)
			require.NoError(t, err, out)
			require.Contains(t, out, "ok "+dir+"/"+profile+".der: "+wantAlg+" CRL signature verified by crypto/x509 (5 entries, number 42)")
			altOK := "Catalyst alternative signature verified by crypto/mldsa over the preTBSCertList"
			if profile != "catalyst" {
				require.NotContains(t, out, altOK)
				return
			}
			require.Contains(t, out, altOK)

			out, err = run(ca.cert, resignCatalyst(t, ca, der), "catalyst-bad-alt")
			require.Error(t, err, out)
			require.Contains(t, out, "CRL signature verified by crypto/x509", "the classical signature is fine")
			require.Contains(t, out, "FAIL: ")
			require.Contains(t, out, "alternative signature does not verify")
		})
	}
}

// circl verifies the ML-DSA CRL, ca/pqc/composite (held to the
// draft-ietf-lamps-pq-composite-sigs-19 vectors) the composite one; the
// signature fields name the issuer key's algorithm.
func TestBuild_PQSignaturesVerify(t *testing.T) {
	for _, profile := range []string{"mldsa", "composite"} {
		t.Run(profile, func(t *testing.T) {
			ca := newBuildCA(t, profile)
			der := fullCRL(t, ca)
			cl := splitCRL(t, der)
			wantAlg := ca.key.Signer.(certenc.AlgorithmSigner).SignatureAlgorithm()
			require.Equal(t, wantAlg.Algorithm, cl.Algorithm.Algorithm)
			require.Empty(t, cl.Algorithm.Parameters.FullBytes, "absent parameters (RFC 9881, composite draft-19)")
			// The TBSCertList's signature field is the same algorithm.
			var seq asn1.RawValue
			_, err := asn1.Unmarshal(cl.TBS.FullBytes, &seq)
			require.NoError(t, err)
			var version int
			rest, err := asn1.Unmarshal(seq.Bytes, &version)
			require.NoError(t, err)
			require.Equal(t, 1, version)
			var inner pkix.AlgorithmIdentifier
			_, err = asn1.Unmarshal(rest, &inner)
			require.NoError(t, err)
			require.Equal(t, cl.Algorithm.Algorithm, inner.Algorithm)

			// Go 1.26 parses the CRL (it cannot check the signature).
			rl, err := x509.ParseRevocationList(der)
			require.NoError(t, err)
			require.Len(t, rl.RevokedCertificateEntries, 5)

			verify := func(msg, sig []byte) bool {
				switch profile {
				case "mldsa":
					var spki struct {
						Algorithm pkix.AlgorithmIdentifier
						Key       asn1.BitString
					}
					_, err := asn1.Unmarshal(ca.cert.RawSubjectPublicKeyInfo, &spki)
					require.NoError(t, err)
					var pk mldsa65.PublicKey
					require.NoError(t, pk.UnmarshalBinary(spki.Key.Bytes))
					return mldsa65.Verify(&pk, msg, nil, sig)
				default:
					pk, err := composite.ParsePKIXPublicKey(ca.cert.RawSubjectPublicKeyInfo)
					require.NoError(t, err)
					return pk.Verify(msg, sig) == nil
				}
			}
			require.True(t, verify(cl.TBS.FullBytes, cl.Signature.Bytes))
			bad := bytes.Clone(cl.TBS.FullBytes)
			bad[len(bad)/2] ^= 1
			require.False(t, verify(bad, cl.Signature.Bytes))
		})
	}
}

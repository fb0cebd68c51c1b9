package inspect_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/certenc"
	"github.com/meshca/meshca/ca/inspect"
	"github.com/meshca/meshca/ca/pqc"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/crl"
)

// TestWrite_CRLNamesDeltaReasonsAndInvalidityDates: a delta CRL says so
// and names its base CRL number (RFC 5280 section 5.2.4), a full CRL
// names where its delta CRLs are (5.2.6), and each entry its reason by
// name (5.3.1; an absent reasonCode is unspecified) and its invalidity
// date (5.3.2).
func TestWrite_CRLNamesDeltaReasonsAndInvalidityDates(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test Intermediate"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCRLSign | x509.KeyUsageCertSign, SubjectKeyId: []byte{1, 2, 3, 4},
	}
	der, err := x509.CreateCertificate(rand.Reader, ca, ca, key.Public(), key)
	require.NoError(t, err)
	ca, err = x509.ParseCertificate(der)
	require.NoError(t, err)
	mustDER := func(v any, params string) []byte {
		b, err := asn1.MarshalWithParams(v, params)
		require.NoError(t, err)
		return b
	}
	invalid := now.Add(-3 * time.Hour)
	entries := []x509.RevocationListEntry{
		{SerialNumber: big.NewInt(0x0a0b), RevocationTime: now.Add(-time.Hour), ReasonCode: 1,
			ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 24}, Value: mustDER(invalid, "generalized")}}},
		{SerialNumber: big.NewInt(0x0c0d), RevocationTime: now.Add(-time.Minute)},
	}
	// The Freshest CRL extension: one distribution point, one URI.
	uri := asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte("http://meshca.test/crl/gen-1-delta.crl")}
	fullName := asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: mustDER(uri, "")}
	dpName := asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: mustDER(fullName, "")}
	freshest := mustDER([]asn1.RawValue{{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: mustDER(dpName, "")}}, "")

	build := func(number int64, exts []pkix.Extension) []byte {
		b, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
			Number: big.NewInt(number), ThisUpdate: now, NextUpdate: now.Add(24 * time.Hour),
			RevokedCertificateEntries: entries, ExtraExtensions: exts,
		}, ca, key)
		require.NoError(t, err)
		return b
	}
	opts := inspect.Options{Now: now}

	var full bytes.Buffer
	require.NoError(t, inspect.Write(&full, build(7, []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 46}, Value: freshest}}), opts))
	out := full.String()
	require.Contains(t, out, "Certificate revocation list\n")
	require.NotContains(t, out, "Delta certificate revocation list")
	require.NotContains(t, out, "Base CRL number")
	require.Contains(t, out, "    CRL number:            7\n")
	require.Contains(t, out, "    Authority key ID:      01020304\n")
	require.Contains(t, out, "    Delta CRLs at:         http://meshca.test/crl/gen-1-delta.crl\n")
	require.Contains(t, out, "    Signature:             ECDSA-SHA256\n")
	require.Contains(t, out, "    Revoked entries:       2\n")
	require.Contains(t, out, "      serial:              0a0b at 2026-12-07T09:00:00Z, reason keyCompromise (1), key invalid since 2026-12-07T07:00:00Z\n")
	require.Contains(t, out, "      serial:              0c0d at 2026-12-07T09:59:00Z, reason not given (unspecified)\n")

	var delta bytes.Buffer
	require.NoError(t, inspect.Write(&delta, build(9, []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 27}, Critical: true, Value: mustDER(big.NewInt(7), "")}}), opts))
	out = delta.String()
	require.Contains(t, out, "Delta certificate revocation list\n")
	require.Contains(t, out, "    CRL number:            9\n")
	require.Contains(t, out, "    Base CRL number:       7 (lists the changes since that full CRL; use it with the full CRL)\n")
	require.NotContains(t, out, "Delta CRLs at")
}

// TestWrite_CRLNamesTheSignatureOfEveryProfile: the signature algorithm of
// a CRL of each of meshca's CA profiles by name (crypto/x509 knows only
// the classical ones), and a Catalyst CRL's alternative signature (ITU-T
// X.509 clause 9.8).
func TestWrite_CRLNamesTheSignatureOfEveryProfile(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		profile, key, alt string
		sig, altSig       string
	}{
		{"classical", "", "", "ECDSA-SHA256", ""},
		{"catalyst", "", "ML-DSA-65", "ECDSA-SHA256", "ML-DSA-65"},
		{"mldsa", "ML-DSA-65", "", "ML-DSA-65", ""},
		{"composite", "MLDSA65-ECDSA-P256-SHA512", "", "MLDSA65-ECDSA-P256-SHA512", ""},
	} {
		t.Run(tc.profile, func(t *testing.T) {
			keys := func() root.CAKey {
				if tc.key != "" {
					k, err := pqc.GenerateKey(tc.key, rand.Reader)
					require.NoError(t, err)
					return root.CAKey{Signer: k}
				}
				ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				require.NoError(t, err)
				k := root.CAKey{Signer: ec}
				if tc.alt != "" {
					alt, err := pqc.GenerateKey(tc.alt, rand.Reader)
					require.NoError(t, err)
					k.Alt = alt.(certenc.AlgorithmSigner)
				}
				return k
			}
			rootKey, key := keys(), keys()
			rc, err := root.NewRoot(rootKey, "Inspect Root", "meshca", time.Hour, now)
			require.NoError(t, err)
			ic, err := root.Mint(rc, rootKey, key, root.IntermediateTemplate{CommonName: "Inspect Intermediate", Organization: "meshca", Lifetime: time.Hour}, now)
			require.NoError(t, err)
			der, err := crl.Build(crl.Params{Issuer: ic, Number: 1, ThisUpdate: now, NextUpdate: now.Add(time.Hour)},
				func(func(crl.Entry) bool) error { return nil }, crl.Signer{Key: key.Signer, Alt: key.Alt})
			require.NoError(t, err)

			var out bytes.Buffer
			require.NoError(t, inspect.Write(&out, der, inspect.Options{Now: now}))
			require.Contains(t, out.String(), "    Signature:             "+tc.sig+"\n")
			if tc.altSig != "" {
				require.Contains(t, out.String(), "    Alt signature:         "+tc.altSig+" (2.5.29.73/.74, ITU-T X.509 clause 9.8)\n")
			} else {
				require.NotContains(t, out.String(), "Alt signature")
			}
		})
	}
}

// TestPrintable_ReplacesControlCharacters: text from a file or a store
// reaches the terminal without C0, DEL or C1 characters (ECMA-48), so a
// crafted CRL or record cannot move the cursor or recolour the output.
func TestPrintable_ReplacesControlCharacters(t *testing.T) {
	require.Equal(t, "http://x/?[31mred?clear??", inspect.Printable("http://x/\x1b[31mred\x7fclear\r\u009b"))
	require.Equal(t, "spiffe://cluster.local/ns/é", inspect.Printable("spiffe://cluster.local/ns/é"))
}

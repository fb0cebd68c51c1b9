package pqc

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"github.com/meshca/meshca/ca/certenc"
	"testing"

	"github.com/meshca/meshca/ca/oid"
	"github.com/meshca/meshca/ca/pqc/internal/pqctest"
	"github.com/meshca/meshca/ca/pqc/mldsa"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/cryptobyte"
)

func extensionOIDs(f *certenc.TBS) []string {
	var out []string
	for _, e := range f.Extensions {
		out = append(out, e.ID.String())
	}
	return out
}

// PreTBS drops exactly the signature AlgorithmIdentifier and 2.5.29.74 and
// keeps every other byte, on Bouncy Castle's Catalyst trust anchors.
func TestPreTBS_DropsSignatureFieldAndAltSignatureValueOnly(t *testing.T) {
	archive := pqctest.Zip(t, "bc")
	names := archive.Names(func(n string) bool { return bytes.HasPrefix([]byte(n), []byte("catalyst_")) })
	require.Len(t, names, 3)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			cert, err := x509.ParseCertificate(archive[name])
			require.NoError(t, err)
			before, err := certenc.ParseTBS(cert.RawTBSCertificate)
			require.NoError(t, err)
			pre, err := certenc.PreTBS(cert.RawTBSCertificate)
			require.NoError(t, err)

			// preTBSCertificate has no signature field, so parse it by hand:
			// the elements are the TBS elements minus the signature field.
			after := splitSequence(t, pre)
			var want [][]byte
			for i, e := range before.Elements {
				if i != before.SignatureIndex && i != before.ExtensionsIndex {
					want = append(want, e)
				}
			}
			require.Equal(t, want, after[:len(after)-1], "non-extension fields are kept byte for byte, signature dropped")
			exts, err := certenc.ParseExtensions(after[len(after)-1])
			require.NoError(t, err)
			kept := &certenc.TBS{Extensions: exts}
			require.Equal(t, []string{"2.5.29.19", "2.5.29.15", "2.5.29.72", "2.5.29.73"}, extensionOIDs(kept))
			require.Equal(t, []string{"2.5.29.19", "2.5.29.15", "2.5.29.72", "2.5.29.73", "2.5.29.74"}, extensionOIDs(before))
			for i, e := range exts {
				require.Equal(t, before.Extensions[i].Raw, e.Raw)
			}
		})
	}
}

func splitSequence(t *testing.T, der []byte) [][]byte {
	t.Helper()
	var raw []asn1.RawValue
	rest, err := asn1.Unmarshal(der, &raw)
	require.NoError(t, err)
	require.Empty(t, rest)
	out := make([][]byte, len(raw))
	for i, r := range raw {
		out[i] = r.FullBytes
	}
	return out
}

func TestPreTBS_AcceptsTBSWithoutAltValueAndRejectsMalformedDER(t *testing.T) {
	key := newMLDSA(t, mldsa.MLDSA44)
	plain := issueTestCert(t, certOpts{cn: "no catalyst", key: key})
	f, err := certenc.ParseTBS(plain.cert.RawTBSCertificate)
	require.NoError(t, err)

	t.Run("no altSignatureValue yet: only the signature field goes", func(t *testing.T) {
		pre, err := certenc.PreTBS(plain.cert.RawTBSCertificate)
		require.NoError(t, err)
		got := splitSequence(t, pre)
		require.Len(t, got, len(f.Elements)-1)
		require.Equal(t, f.Elements[f.ExtensionsIndex], got[len(got)-1])
	})

	t.Run("2.5.29.74 as the only extension: extensions field omitted", func(t *testing.T) {
		elems := append([][]byte(nil), f.Elements...)
		elems[f.ExtensionsIndex] = extensionsField(t, mustDER(t, pkix.Extension{Id: oid.AltSignatureValue, Value: []byte{0x03, 0x01, 0x00}}))
		tbs := encodeSequence(t, elems)
		pre, err := certenc.PreTBS(tbs)
		require.NoError(t, err)
		require.Len(t, splitSequence(t, pre), f.ExtensionsIndex-1, "signature field and [3] both gone")
	})

	t.Run("malformed input", func(t *testing.T) {
		for name, tbs := range map[string][]byte{
			"empty":               nil,
			"INTEGER only":        {0x30, 0x03, 0x02, 0x01, 0x01},
			"trailing":            append(bytes.Clone(plain.cert.RawTBSCertificate), 0x00),
			"not a SEQUENCE":      {0x04, 0x00},
			"truncated":           plain.cert.RawTBSCertificate[:40],
			"only a [0]":          {0x30, 0x05, 0xa0, 0x03, 0x02, 0x01, 0x02},
			"bad extension":       withBadExtension(t, f),
			"duplicate 2.5.29.74": withTwo74(t, f),
		} {
			_, err := certenc.PreTBS(tbs)
			require.ErrorIs(t, err, certenc.ErrMalformedCertificate, name)
		}
	})
}

// extensionsField encodes [3] EXPLICIT SEQUENCE OF Extension.
func extensionsField(t *testing.T, exts ...[]byte) []byte {
	t.Helper()
	var b cryptobyte.Builder
	b.AddASN1(tagExtensionsTest, func(b *cryptobyte.Builder) { b.AddBytes(encodeSequence(t, exts)) })
	out, err := b.Bytes()
	require.NoError(t, err)
	return out
}

func withBadExtension(t *testing.T, f *certenc.TBS) []byte {
	elems := append([][]byte(nil), f.Elements...)
	elems[f.ExtensionsIndex] = extensionsField(t, []byte{0x30, 0x00})
	return encodeSequence(t, elems)
}

func withTwo74(t *testing.T, f *certenc.TBS) []byte {
	ext := mustDER(t, pkix.Extension{Id: oid.AltSignatureValue, Value: []byte{0x03, 0x01, 0x00}})
	elems := append([][]byte(nil), f.Elements...)
	elems[f.ExtensionsIndex] = extensionsField(t, ext, ext)
	return encodeSequence(t, elems)
}

func TestParseCatalyst_RejectsInconsistentExtensions(t *testing.T) {
	alt := newMLDSA(t, mldsa.MLDSA44)
	root := issueTestCert(t, certOpts{cn: "root", key: newEC(t), altKey: alt, altSign: true, ca: true})
	f, err := certenc.ParseTBS(root.cert.RawTBSCertificate)
	require.NoError(t, err)
	c, err := parseCatalyst(f)
	require.NoError(t, err)
	require.False(t, c.SubjectAltPublicKeyCritical)
	require.Len(t, c.AltSignatureValue, mldsa.MLDSA44.SignatureSize())

	_, err = parseCatalyst(withoutExt(f, oid.AltSignatureValue))
	require.ErrorIs(t, err, ErrMalformedCatalyst)
	_, err = parseCatalyst(withoutExt(f, oid.AltSignatureAlgorithm))
	require.ErrorIs(t, err, ErrMalformedCatalyst)

	onlyKey, err := parseCatalyst(withoutExt(withoutExt(f, oid.AltSignatureValue), oid.AltSignatureAlgorithm))
	require.NoError(t, err)
	require.False(t, onlyKey.HasAltSignature())
	require.NotNil(t, onlyKey.SubjectAltPublicKeyInfo)

	none, err := parseCatalyst(&certenc.TBS{})
	require.NoError(t, err)
	require.Nil(t, none)

	plain := issueTestCert(t, certOpts{cn: "plain", key: newEC(t)})
	require.ErrorIs(t, VerifyAltSignature(plain.cert, mustSPKI(t, alt)), ErrNoAltSignature)
}

func withoutExt(f *certenc.TBS, oid asn1.ObjectIdentifier) *certenc.TBS {
	g := *f
	g.Extensions = nil
	for _, e := range f.Extensions {
		if !e.ID.Equal(oid) {
			g.Extensions = append(g.Extensions, e)
		}
	}
	return &g
}

func mustSPKI(t *testing.T, k *mldsa.PrivateKey) []byte {
	t.Helper()
	b, err := mldsa.MarshalPKIXPublicKey(k.PublicKey())
	require.NoError(t, err)
	return b
}

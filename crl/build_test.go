package crl_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/crl"
)

var (
	oidAKI            = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidCRLNumber      = asn1.ObjectIdentifier{2, 5, 29, 20}
	oidDeltaIndicator = asn1.ObjectIdentifier{2, 5, 29, 27}
	oidFreshestCRL    = asn1.ObjectIdentifier{2, 5, 29, 46}
	oidAltSigAlg      = asn1.ObjectIdentifier{2, 5, 29, 73}
	oidAltSigValue    = asn1.ObjectIdentifier{2, 5, 29, 74}
	oidReasonCode     = asn1.ObjectIdentifier{2, 5, 29, 21}
	oidInvalidityDate = asn1.ObjectIdentifier{2, 5, 29, 24}
)

var (
	thisUpdate = time.Date(2026, 12, 5, 14, 0, 0, 0, time.UTC)
	nextUpdate = thisUpdate.Add(24 * time.Hour)
)

func serial20() []byte {
	s := bytes.Repeat([]byte{0xfe}, 20) // high bit set: the INTEGER needs a 0x00 pad
	s[19] = 0x01
	return s
}

// sampleEntries exercise every encoding choice: INTEGER padding and
// leading zeros, UTCTime and GeneralizedTime, no extensions, reasonCode
// only, reasonCode with invalidityDate.
func sampleEntries() []crl.Entry {
	return []crl.Entry{
		{Serial: []byte{0x01}, RevokedAt: time.Date(2026, 12, 1, 10, 11, 12, 500e6, time.UTC),
			Reason: store.ReasonKeyCompromise, InvalidityDate: time.Date(2026, 11, 30, 23, 59, 58, 0, time.UTC)},
		{Serial: []byte{0x80}, RevokedAt: time.Date(2026, 12, 2, 0, 0, 0, 0, time.FixedZone("CET", 3600))},
		{Serial: serial20(), RevokedAt: time.Date(2051, 1, 2, 3, 4, 5, 0, time.UTC), Reason: store.ReasonSuperseded},
		{Serial: []byte{0x00, 0x00, 0x7f}, RevokedAt: time.Date(1999, 12, 31, 23, 59, 59, 0, time.UTC), Reason: store.ReasonCessationOfOperation},
		{Serial: []byte{0x12, 0x34, 0x56, 0x78, 0x9a}, RevokedAt: time.Date(2026, 12, 3, 1, 2, 3, 0, time.UTC), Reason: store.ReasonAACompromise},
	}
}

func extIDs(exts []pkix.Extension) []string {
	var ids []string
	for _, e := range exts {
		ids = append(ids, e.Id.String())
	}
	return ids
}

func findExt(exts []pkix.Extension, oid asn1.ObjectIdentifier) *pkix.Extension {
	for i := range exts {
		if exts[i].Id.Equal(oid) {
			return &exts[i]
		}
	}
	return nil
}

// requireEntries checks every parsed entry against what was revoked.
func requireEntries(t *testing.T, want []crl.Entry, got []x509.RevocationListEntry) {
	t.Helper()
	require.Len(t, got, len(want))
	for i, w := range want {
		g := got[i]
		require.Equal(t, new(big.Int).SetBytes(w.Serial), g.SerialNumber, "entry %d serial", i)
		require.Equal(t, w.RevokedAt.Truncate(time.Second).UTC(), g.RevocationTime, "entry %d revocationDate", i)
		require.Equal(t, int(w.Reason), g.ReasonCode, "entry %d reason", i)
		var ids []string
		if !w.InvalidityDate.IsZero() {
			ids = append(ids, oidInvalidityDate.String())
			var inv time.Time
			rest, err := asn1.UnmarshalWithParams(findExt(g.Extensions, oidInvalidityDate).Value, &inv, "generalized")
			require.NoError(t, err, "invalidityDate is a GeneralizedTime (RFC 5280 5.3.2)")
			require.Empty(t, rest)
			require.Equal(t, w.InvalidityDate.UTC(), inv)
		}
		if w.Reason != store.ReasonUnspecified {
			ids = append(ids, oidReasonCode.String())
		}
		require.Equal(t, ids, extIDs(g.Extensions), "entry %d extensions", i)
		for _, e := range g.Extensions {
			require.False(t, e.Critical)
		}
	}
}

func TestBuild_GoParsesAndVerifiesFullAndDelta(t *testing.T) {
	for _, profile := range []string{"classical", "catalyst"} {
		t.Run(profile, func(t *testing.T) {
			ca := newBuildCA(t, profile)
			entries := sampleEntries()

			der, err := crl.Build(crl.Params{
				Issuer: ca.cert, Number: 42, ThisUpdate: thisUpdate.Add(300 * time.Millisecond), NextUpdate: nextUpdate,
				FreshestCRL: []string{"http://meshca.example/crl/gen-1/delta.crl", "https://meshca.example:8443/crl/gen-1/delta.crl"},
			}, entriesOf(entries...), ca.signer())
			require.NoError(t, err)
			rl, err := x509.ParseRevocationList(der)
			require.NoError(t, err)
			require.NoError(t, rl.CheckSignatureFrom(ca.cert))
			require.Equal(t, x509.ECDSAWithSHA256, rl.SignatureAlgorithm)
			require.Equal(t, ca.cert.RawSubject, rl.RawIssuer)
			require.Equal(t, big.NewInt(42), rl.Number)
			require.Equal(t, ca.cert.SubjectKeyId, rl.AuthorityKeyId)
			require.Equal(t, thisUpdate, rl.ThisUpdate)
			require.Equal(t, nextUpdate, rl.NextUpdate)
			requireEntries(t, entries, rl.RevokedCertificateEntries)
			wantIDs := []string{oidAKI.String(), oidCRLNumber.String(), oidFreshestCRL.String()}
			if profile == "catalyst" {
				wantIDs = append(wantIDs, oidAltSigAlg.String(), oidAltSigValue.String())
			}
			require.Equal(t, wantIDs, extIDs(rl.Extensions))
			for _, e := range rl.Extensions {
				require.False(t, e.Critical, "%v", e.Id)
			}
			// FreshestCRL has the syntax of CRLDistributionPoints: Go
			// parses that syntax in certificates.
			fresh := findExt(rl.Extensions, oidFreshestCRL)
			holder := &x509.Certificate{SerialNumber: big.NewInt(1), ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 31}, Value: fresh.Value}}}
			k := buildP256(t)
			hder, err := x509.CreateCertificate(rand.Reader, holder, holder, k.Public(), k)
			require.NoError(t, err)
			hc, err := x509.ParseCertificate(hder)
			require.NoError(t, err)
			require.Equal(t, []string{"http://meshca.example/crl/gen-1/delta.crl", "https://meshca.example:8443/crl/gen-1/delta.crl"}, hc.CRLDistributionPoints)

			delta, err := crl.Build(crl.Params{
				Issuer: ca.cert, Number: 43, BaseNumber: 42, ThisUpdate: thisUpdate, NextUpdate: nextUpdate,
			}, entriesOf(entries[:2]...), ca.signer())
			require.NoError(t, err)
			drl, err := x509.ParseRevocationList(delta)
			require.NoError(t, err)
			require.NoError(t, drl.CheckSignatureFrom(ca.cert))
			require.Equal(t, big.NewInt(43), drl.Number)
			requireEntries(t, entries[:2], drl.RevokedCertificateEntries)
			wantIDs = []string{oidAKI.String(), oidCRLNumber.String(), oidDeltaIndicator.String()}
			if profile == "catalyst" {
				wantIDs = append(wantIDs, oidAltSigAlg.String(), oidAltSigValue.String())
			}
			require.Equal(t, wantIDs, extIDs(drl.Extensions))
			ind := findExt(drl.Extensions, oidDeltaIndicator)
			require.True(t, ind.Critical, "DeltaCRLIndicator MUST be critical (RFC 5280 5.2.4)")
			var base int
			_, err = asn1.Unmarshal(ind.Value, &base)
			require.NoError(t, err)
			require.Equal(t, 42, base)
		})
	}
}

// A CRL without entries leaves revokedCertificates out (RFC 5280
// 5.1.2.6); its TBSCertList is then byte-identical to Go's.
func TestBuild_EmptyAndParityWithCreateRevocationList(t *testing.T) {
	ca := newBuildCA(t, "classical")
	entries := sampleEntries()
	for _, n := range []int{0, len(entries)} {
		der, err := crl.Build(crl.Params{Issuer: ca.cert, Number: 7, ThisUpdate: thisUpdate, NextUpdate: nextUpdate},
			entriesOf(entries[:n]...), ca.signer())
		require.NoError(t, err)
		rl, err := x509.ParseRevocationList(der)
		require.NoError(t, err)
		require.NoError(t, rl.CheckSignatureFrom(ca.cert))

		tmpl := &x509.RevocationList{Number: big.NewInt(7), ThisUpdate: thisUpdate, NextUpdate: nextUpdate}
		for _, e := range entries[:n] {
			re := x509.RevocationListEntry{SerialNumber: new(big.Int).SetBytes(e.Serial), RevocationTime: e.RevokedAt, ReasonCode: int(e.Reason)}
			if !e.InvalidityDate.IsZero() {
				v, err := asn1.MarshalWithParams(e.InvalidityDate.UTC(), "generalized")
				require.NoError(t, err)
				re.ExtraExtensions = []pkix.Extension{{Id: oidInvalidityDate, Value: v}}
			}
			tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, re)
		}
		std, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.cert, ca.key.Signer.(*ecdsa.PrivateKey))
		require.NoError(t, err)
		srl, err := x509.ParseRevocationList(std)
		require.NoError(t, err)
		require.Equal(t, srl.RawTBSRevocationList, rl.RawTBSRevocationList, "%d entries", n)
	}
}

// Enough entries to fill several encoding chunks, in both time forms:
// still byte-identical to Go's TBSCertList.
func TestBuild_ManyEntriesParityWithCreateRevocationList(t *testing.T) {
	ca := newBuildCA(t, "classical")
	var es []crl.Entry
	tmpl := &x509.RevocationList{Number: big.NewInt(1 << 40), ThisUpdate: thisUpdate, NextUpdate: nextUpdate}
	for i := range 30_000 {
		serial := make([]byte, 1+i%20)
		for j := range serial {
			serial[j] = byte(i*7 + j*13 + 1)
		}
		e := crl.Entry{Serial: serial, RevokedAt: time.Date(2049, 12, 31, 23, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second), Reason: []store.Reason{0, 1, 4, 5}[i%4]}
		es = append(es, e)
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{
			SerialNumber: new(big.Int).SetBytes(serial), RevocationTime: e.RevokedAt, ReasonCode: int(e.Reason)})
	}
	der, err := crl.Build(crl.Params{Issuer: ca.cert, Number: 1 << 40, ThisUpdate: thisUpdate, NextUpdate: nextUpdate}, entriesOf(es...), ca.signer())
	require.NoError(t, err)
	rl, err := x509.ParseRevocationList(der)
	require.NoError(t, err)
	require.NoError(t, rl.CheckSignatureFrom(ca.cert))
	std, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.cert, ca.key.Signer.(*ecdsa.PrivateKey))
	require.NoError(t, err)
	srl, err := x509.ParseRevocationList(std)
	require.NoError(t, err)
	require.Greater(t, len(rl.RawTBSRevocationList), 1<<20)
	require.True(t, bytes.Equal(srl.RawTBSRevocationList, rl.RawTBSRevocationList), "TBSCertList differs from crypto/x509's")
}

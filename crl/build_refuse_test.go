package crl_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/certenc"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/crl"
)

// selfIssued makes a certificate for key with the given key usage and
// subject key identifier (nil: none; Go adds one only to CA certificates).
func selfIssued(t *testing.T, ku x509.KeyUsage, isCA bool, skid []byte) *x509.Certificate {
	t.Helper()
	k := buildP256(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: "odd issuer"},
		NotBefore: thisUpdate.Add(-time.Hour), NotAfter: nextUpdate.Add(time.Hour),
		KeyUsage: ku, BasicConstraintsValid: true, IsCA: isCA, SubjectKeyId: skid,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return c
}

func TestBuild_RefusesBadParamsWithClearErrors(t *testing.T) {
	ca := newBuildCA(t, "classical")
	cat := newBuildCA(t, "catalyst")
	other := newBuildCA(t, "catalyst")
	pq, otherPQ := newBuildCA(t, "mldsa"), newBuildCA(t, "mldsa")
	ok := crl.Params{Issuer: ca.cert, Number: 5, ThisUpdate: thisUpdate, NextUpdate: nextUpdate}
	with := func(f func(*crl.Params)) crl.Params { p := ok; f(&p); return p }
	noCRLSign := selfIssued(t, x509.KeyUsageCertSign, true, nil)
	noSKID := selfIssued(t, x509.KeyUsageCRLSign|x509.KeyUsageDigitalSignature, false, nil)
	require.Empty(t, noSKID.SubjectKeyId)

	for name, c := range map[string]struct {
		p    crl.Params
		s    crl.Signer
		want string
	}{
		"no issuer":      {with(func(p *crl.Params) { p.Issuer = nil }), ca.signer(), "crl: no issuer certificate"},
		"no cRLSign":     {with(func(p *crl.Params) { p.Issuer = noCRLSign }), ca.signer(), `crl: issuer "CN=odd issuer" lacks the cRLSign key usage (RFC 5280 section 4.2.1.3): it cannot sign CRLs`},
		"no SKID":        {with(func(p *crl.Params) { p.Issuer = noSKID }), ca.signer(), `crl: issuer "CN=odd issuer" has no subject key identifier: the CRL's authorityKeyIdentifier needs one (RFC 5280 section 5.2.1)`},
		"number 0":       {with(func(p *crl.Params) { p.Number = 0 }), ca.signer(), "crl: CRL number 0: numbers start at 1 and only increase (RFC 5280 section 5.2.3)"},
		"next == this":   {with(func(p *crl.Params) { p.NextUpdate = thisUpdate.Add(999 * time.Millisecond) }), ca.signer(), "crl: nextUpdate 2026-12-05T14:00:00Z is not after thisUpdate 2026-12-05T14:00:00Z"},
		"next < this":    {with(func(p *crl.Params) { p.NextUpdate = thisUpdate.Add(-time.Hour) }), ca.signer(), "crl: nextUpdate 2026-12-05T13:00:00Z is not after thisUpdate 2026-12-05T14:00:00Z"},
		"no thisUpdate":  {with(func(p *crl.Params) { p.ThisUpdate = time.Time{} }), ca.signer(), "crl: thisUpdate is not set"},
		"year 10000":     {with(func(p *crl.Params) { p.NextUpdate = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }), ca.signer(), "crl: nextUpdate year 10000 cannot be encoded"},
		"delta base":     {with(func(p *crl.Params) { p.BaseNumber = 6 }), ca.signer(), "crl: delta CRL number 5 is less than its base CRL number 6 (RFC 5280 section 5.2.4)"},
		"delta freshest": {with(func(p *crl.Params) { p.BaseNumber = 4; p.FreshestCRL = []string{"http://x/d.crl"} }), ca.signer(), "crl: a delta CRL must not carry FreshestCRL (RFC 5280 section 5.2.6)"},
		"bad URI":        {with(func(p *crl.Params) { p.FreshestCRL = []string{"http://x/a b.crl"} }), ca.signer(), `crl: FreshestCRL URI "http://x/a b.crl": only printable ASCII without spaces is allowed (IA5String)`},
		"relative URI":   {with(func(p *crl.Params) { p.FreshestCRL = []string{"/delta.crl"} }), ca.signer(), `crl: FreshestCRL URI "/delta.crl" is not an absolute URI with a host`},
		"no key":         {ok, crl.Signer{}, "crl: no signing key"},
		"wrong key":      {ok, crl.Signer{Key: buildP256(t)}, `crl: signing key for issuer "CN=CRL Test Intermediate classical,O=meshca": the private key does not match the certificate's public key`},
		"wrong ML-DSA":   {with(func(p *crl.Params) { p.Issuer = pq.cert }), otherPQ.signer(), `crl: signing key for issuer "CN=CRL Test Intermediate mldsa,O=meshca": the private key does not match the certificate's public key`},
		"alt on non-cat": {ok, crl.Signer{Key: ca.key.Signer, Alt: cat.key.Alt}, `crl: alternative signing key for issuer "CN=CRL Test Intermediate classical,O=meshca": has no ML-DSA alternative public key (2.5.29.72)`},
		"wrong alt":      {with(func(p *crl.Params) { p.Issuer = cat.cert }), crl.Signer{Key: cat.key.Signer, Alt: other.key.Alt}, `crl: alternative signing key for issuer "CN=CRL Test Intermediate catalyst,O=meshca": the ML-DSA key does not match the certificate's alternative public key (2.5.29.72)`},
		"PQ primary+alt": {with(func(p *crl.Params) { p.Issuer = cat.cert }), crl.Signer{Key: cat.key.Alt, Alt: cat.key.Alt}, `crl: signing key for issuer "CN=CRL Test Intermediate catalyst,O=meshca": the private key does not match the certificate's public key`},
	} {
		t.Run(name, func(t *testing.T) {
			der, err := crl.Build(c.p, entriesOf(sampleEntries()...), c.s)
			require.EqualError(t, err, c.want)
			require.Nil(t, der)
		})
	}
}

func TestBuild_RefusesBadEntriesAndPassesSourceErrors(t *testing.T) {
	ca := newBuildCA(t, "classical")
	p := crl.Params{Issuer: ca.cert, Number: 5, ThisUpdate: thisUpdate, NextUpdate: nextUpdate}
	at := thisUpdate.Add(-time.Hour)
	for name, c := range map[string]struct {
		e    crl.Entry
		want string
	}{
		"empty serial":  {crl.Entry{Serial: nil, RevokedAt: at}, "crl: entry has an empty serial"},
		"21 octets":     {crl.Entry{Serial: append([]byte{1}, serial20()...), RevokedAt: at}, "crl: entry serial 01fefefefefefefefefefefefefefefefefefefe01 is longer than 20 octets (RFC 5280 section 4.1.2.2)"},
		"no revokedAt":  {crl.Entry{Serial: []byte{1}}, "crl: revocationDate of serial 01 is not set"},
		"reason 7":      {crl.Entry{Serial: []byte{2}, RevokedAt: at, Reason: 7}, "crl: serial 02: Reason(7) is not a CRLReason (RFC 5280 section 5.3.1)"},
		"reason 11":     {crl.Entry{Serial: []byte{2}, RevokedAt: at, Reason: 11}, "crl: serial 02: Reason(11) is not a CRLReason (RFC 5280 section 5.3.1)"},
		"invalidity y0": {crl.Entry{Serial: []byte{3}, RevokedAt: at, InvalidityDate: time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)}, "crl: invalidityDate of serial 03 year 0 cannot be encoded"},
	} {
		t.Run(name, func(t *testing.T) {
			der, err := crl.Build(p, entriesOf(sampleEntries()[0], c.e, sampleEntries()[1]), ca.signer())
			require.EqualError(t, err, c.want)
			require.Nil(t, der)
		})
	}

	boom := errors.New("store: disk on fire")
	der, err := crl.Build(p, func(yield func(crl.Entry) bool) error {
		yield(crl.Entry{Serial: []byte{1}, RevokedAt: at, Reason: store.ReasonKeyCompromise})
		return boom
	}, ca.signer())
	require.ErrorIs(t, err, boom)
	require.EqualError(t, err, "crl: entries: store: disk on fire")
	require.Nil(t, der)
}

// A signer whose signatures do not verify makes no CRL, even an
// in-process key (certenc.VerifyAlways).
func TestBuild_RefusesAFaultySignature(t *testing.T) {
	ca := newBuildCA(t, "classical")
	p := crl.Params{Issuer: ca.cert, Number: 5, ThisUpdate: thisUpdate, NextUpdate: nextUpdate}
	der, err := crl.Build(p, entriesOf(sampleEntries()...), crl.Signer{Key: faultySigner{ca.key.Signer}})
	require.EqualError(t, err, "crl: certenc: signature returned by signer is invalid: ECDSA verification failure")
	require.Nil(t, der)

	cat := newBuildCA(t, "catalyst")
	p.Issuer = cat.cert
	der, err = crl.Build(p, entriesOf(sampleEntries()...), crl.Signer{Key: cat.key.Signer, Alt: faultyAlt{cat.key.Alt}})
	require.ErrorContains(t, err, "crl: alternative signature: certenc: signature returned by signer is invalid")
	require.Nil(t, der)
}

var _ certenc.AlgorithmSigner = faultyAlt{}

// certenc.VerifyAuto would trust an in-process Ed25519 key; a CRL is
// checked anyway. The key below signs with another seed than its public
// half (a corrupted key file): only the check can notice.
func TestBuild_VerifiesEvenAnInProcessKey(t *testing.T) {
	_, good, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	_, other, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	rootCert, err := root.NewRoot(root.CAKey{Signer: good}, "Ed25519 CRL Root", "meshca", time.Hour, time.Now())
	require.NoError(t, err)
	p := crl.Params{Issuer: rootCert, Number: 5, ThisUpdate: thisUpdate, NextUpdate: nextUpdate}

	der, err := crl.Build(p, entriesOf(sampleEntries()...), crl.Signer{Key: good})
	require.NoError(t, err)
	rl, err := x509.ParseRevocationList(der)
	require.NoError(t, err)
	require.NoError(t, rl.CheckSignatureFrom(rootCert))

	corrupt := append(append(ed25519.PrivateKey{}, other.Seed()...), good.Public().(ed25519.PublicKey)...)
	der, err = crl.Build(p, entriesOf(sampleEntries()...), crl.Signer{Key: corrupt})
	require.EqualError(t, err, "crl: certenc: signature returned by signer is invalid: Ed25519 verification failure")
	require.Nil(t, der)
}

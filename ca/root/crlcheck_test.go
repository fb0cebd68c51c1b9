package root_test

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/root"
)

// crlOf is a CRL numbered n that r signs, valid for an hour from now,
// shaped by mutate.
func crlOf(t *testing.T, r ca, n int64, mutate ...func(*x509.RevocationList)) *x509.RevocationList {
	t.Helper()
	tmpl := &x509.RevocationList{Number: big.NewInt(n), ThisUpdate: now, NextUpdate: now.Add(time.Hour)}
	for _, m := range mutate {
		m(tmpl)
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, r.cert, r.key)
	require.NoError(t, err)
	l, err := x509.ParseRevocationList(der)
	require.NoError(t, err)
	return l
}

func withExt(id asn1.ObjectIdentifier, critical bool, value []byte) func(*x509.RevocationList) {
	return func(l *x509.RevocationList) {
		l.ExtraExtensions = append(l.ExtraExtensions, pkix.Extension{Id: id, Critical: critical, Value: value})
	}
}

// idp is an IssuingDistributionPoint (RFC 5280 section 5.2.5) of the
// given DER fields.
func idp(fields ...[]byte) []byte {
	var body []byte
	for _, f := range fields {
		body = append(body, f...)
	}
	return append([]byte{0x30, byte(len(body))}, body...)
}

// What CheckRootCRL refuses of a root's CRL, and what it takes.
func TestCheckRootCRL_RefusesWhatIsNotTheIssuersCompleteCRL(t *testing.T) {
	r := newRoot(t, "CRL Root", 24*time.Hour)
	oidIDP := asn1.ObjectIdentifier{2, 5, 29, 28}
	onlyCA := []byte{0x82, 0x01, 0xff}   // onlyContainsCACerts TRUE
	onlyUser := []byte{0x81, 0x01, 0xff} // onlyContainsUserCerts TRUE
	dpName := []byte{0xa0, 0x08, 0xa0, 0x06, 0x86, 0x04, 'h', 't', 't', 'p'}
	indirect := []byte{0x84, 0x01, 0xff}
	for name, c := range map[string]struct {
		crl  *x509.RevocationList
		want string // "" when taken
	}{
		"complete":                    {crlOf(t, r, 2), ""},
		"IDP: CA certificates only":   {crlOf(t, r, 2, withExt(oidIDP, true, idp(onlyCA))), ""},
		"IDP: user certificates only": {crlOf(t, r, 2, withExt(oidIDP, true, idp(onlyUser))), "limits it to part of its issuer's certificates"},
		"IDP: a distribution point":   {crlOf(t, r, 2, withExt(oidIDP, true, idp(dpName, onlyCA))), "limits it to part of its issuer's certificates"},
		"IDP: indirect":               {crlOf(t, r, 2, withExt(oidIDP, true, idp(indirect))), "limits it to part of its issuer's certificates"},
		"IDP: garbage":                {crlOf(t, r, 2, withExt(oidIDP, true, []byte{0x30, 0x05, 0x01})), "issuing distribution point that does not parse"},
		"IDP: empty":                  {crlOf(t, r, 2, withExt(oidIDP, true, idp())), ""},
		"IDP: CA certificates, empty": {crlOf(t, r, 2, withExt(oidIDP, true, idp([]byte{0x82, 0x00}))), "onlyContainsCACerts is not DER TRUE"},
		"IDP: CA certificates, twice": {crlOf(t, r, 2, withExt(oidIDP, true, idp(onlyCA, onlyCA))), "limits it to part of its issuer's certificates"},
		"critical CRLNumber": {crlOf(t, r, 2, func(l *x509.RevocationList) {
			n, err := asn1.Marshal(big.NewInt(2))
			require.NoError(t, err)
			l.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 20}, Critical: true, Value: n}}
		}), "has a critical extension 2.5.29.20"},
		"unknown critical extension": {crlOf(t, r, 2, withExt(asn1.ObjectIdentifier{1, 2, 3, 4}, true, []byte{0x05, 0x00})), "has a critical extension 1.2.3.4"},
		"unknown extension":          {crlOf(t, r, 2, withExt(asn1.ObjectIdentifier{1, 2, 3, 4}, false, []byte{0x05, 0x00})), ""},
		"critical entry extension": {crlOf(t, r, 2, func(l *x509.RevocationList) {
			l.RevokedCertificateEntries = []x509.RevocationListEntry{{SerialNumber: big.NewInt(9), RevocationTime: now,
				ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 2, 3, 5}, Critical: true, Value: []byte{0x05, 0x00}}}}}
		}), "has a critical extension 1.2.3.5 on the entry of serial 9"},
	} {
		_, err := root.CheckRootCRL(c.crl, nil, r.cert, now)
		if c.want == "" {
			require.NoError(t, err, name)
		} else {
			require.ErrorContains(t, err, c.want, name)
		}
	}
}

// Whether a CRL replaces the one held: a lower number only when the one
// held has expired and it is valid now and was issued after it (the
// issuer's numbering went back; a replayed older CRL with a long
// nextUpdate was issued before);
// an expired copy of the number held, or a CRL not valid yet, waits while
// the one held is usable (or about to be); a CRL issued before the one
// held is refused (a greater number gets the clock skew); an expired CRL
// with a greater number is taken (it lists more).
func TestCheckRootCRL_Verdicts(t *testing.T) {
	r := newRoot(t, "CRL Root", 24*time.Hour)
	valid := func(from, to time.Duration) func(*x509.RevocationList) {
		return func(l *x509.RevocationList) { l.ThisUpdate, l.NextUpdate = now.Add(from), now.Add(to) }
	}
	usable, expired, early := valid(-time.Hour, time.Hour), valid(-2*time.Hour, -time.Hour), valid(time.Minute, 2*time.Hour)
	for name, c := range map[string]struct {
		held, crl *x509.RevocationList
		want      root.RootCRLVerdict
	}{
		"nothing held":                                {nil, crlOf(t, r, 5, usable), root.TakeCRL},
		"nothing held, expired":                       {nil, crlOf(t, r, 5, expired), root.TakeStaleCRL},
		"nothing held, not valid yet":                 {nil, crlOf(t, r, 5, early), root.TakeCRL},
		"greater":                                     {crlOf(t, r, 5, usable), crlOf(t, r, 6, usable), root.TakeCRL},
		"lower":                                       {crlOf(t, r, 5, usable), crlOf(t, r, 4, usable), root.KeepOlderNumber},
		"lower, held expired":                         {crlOf(t, r, 5, expired), crlOf(t, r, 4, usable), root.TakeRenumbered},
		"lower, issued before held":                   {crlOf(t, r, 5, valid(-2*time.Hour, -90*time.Minute)), crlOf(t, r, 4, valid(-3*time.Hour, time.Hour)), root.KeepOlderNumber},
		"lower, both expired":                         {crlOf(t, r, 5, expired), crlOf(t, r, 4, expired), root.KeepOlderNumber},
		"lower, not yet, held expired":                {crlOf(t, r, 5, expired), crlOf(t, r, 4, early), root.KeepOlderNumber},
		"same, expired copy":                          {crlOf(t, r, 5, usable), crlOf(t, r, 5, expired), root.KeepFresher},
		"same, expired, held not yet":                 {crlOf(t, r, 5, early), crlOf(t, r, 5, expired), root.KeepFresher},
		"greater, expired":                            {crlOf(t, r, 5, valid(-3*time.Hour, time.Hour)), crlOf(t, r, 6, expired), root.TakeStaleCRL},
		"greater, issued before held":                 {crlOf(t, r, 5, usable), crlOf(t, r, 6, valid(-2*time.Hour, 30*24*time.Hour)), root.KeepIssuedBefore},
		"greater, expired, issued before":             {crlOf(t, r, 5, usable), crlOf(t, r, 6, expired), root.KeepIssuedBefore},
		"same, issued before held":                    {crlOf(t, r, 5, usable), crlOf(t, r, 5, valid(-2*time.Hour, time.Hour)), root.KeepIssuedBefore},
		"same, issued a second before":                {crlOf(t, r, 5, usable), crlOf(t, r, 5, valid(-time.Hour-time.Second, time.Hour)), root.KeepIssuedBefore},
		"greater, issued within the skew before held": {crlOf(t, r, 5, usable), crlOf(t, r, 6, valid(-time.Hour-root.MaxCRLClockSkew, time.Hour)), root.TakeCRL},
		"greater, held expired, CA clock behind":      {crlOf(t, r, 5, expired), crlOf(t, r, 6, valid(-2*time.Hour-time.Minute, time.Hour)), root.TakeCRL},
		"greater, not valid yet":                      {crlOf(t, r, 5, usable), crlOf(t, r, 6, early), root.KeepFresher},
		"greater, not yet, held expired":              {crlOf(t, r, 5, expired), crlOf(t, r, 6, early), root.TakeCRL},
		"greater, held expired":                       {crlOf(t, r, 5, expired), crlOf(t, r, 6, usable), root.TakeCRL},
	} {
		v, err := root.CheckRootCRL(c.crl, c.held, r.cert, now)
		require.NoError(t, err, name)
		require.Equal(t, c.want, v, name)
	}
}

// The CRL held is compared with only when it is still the issuer's: after
// a re-key under the same name (numbers start afresh), it counts as none.
func TestCheckRootCRL_AHeldCRLOfAnotherKeyCountsAsNone(t *testing.T) {
	old, rekeyed := newRoot(t, "CRL Root", 24*time.Hour), newRoot(t, "CRL Root", 24*time.Hour)
	held := crlOf(t, old, 50)
	v, err := root.CheckRootCRL(crlOf(t, rekeyed, 1), held, rekeyed.cert, now)
	require.NoError(t, err)
	require.Equal(t, root.TakeCRL, v)
	v, err = root.CheckRootCRL(crlOf(t, old, 1), held, old.cert, now)
	require.NoError(t, err)
	require.Equal(t, root.KeepOlderNumber, v, "the same key: a rollback")
	unnumbered := crlOf(t, old, 51)
	unnumbered.Number = nil // as parsed from a CRL without the extension (Go cannot make one)
	_, err = root.CheckRootCRL(unnumbered, held, old.cert, now)
	require.ErrorContains(t, err, "has no CRLNumber, and the CRL held has number 50")
	unnumbered.NextUpdate = time.Time{} // likewise
	_, err = root.CheckRootCRL(unnumbered, nil, old.cert, now)
	require.ErrorContains(t, err, "has no nextUpdate")
}

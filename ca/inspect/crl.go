package inspect

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"io"
	"math/big"
	"strings"
	"time"

	"github.com/meshca/meshca/ca/oid"
	"github.com/meshca/meshca/ca/pqc"
	"github.com/meshca/meshca/ca/store"
)

// listedEntries is how many revoked certificates a CRL's summary lists.
const listedEntries = 20

func revocationList(w io.Writer, crl *x509.RevocationList, opts Options) {
	base, isDelta := deltaBase(crl)
	if isDelta {
		fmt.Fprintln(w, "Delta certificate revocation list")
	} else {
		fmt.Fprintln(w, "Certificate revocation list")
	}
	p := func(k, f string, a ...any) { fmt.Fprintf(w, "    %-22s %s\n", k+":", fmt.Sprintf(f, a...)) }
	p("Issuer", "%s", crl.Issuer.String())
	if len(crl.AuthorityKeyId) > 0 {
		p("Authority key ID", "%s", hex.EncodeToString(crl.AuthorityKeyId))
	}
	if crl.Number != nil {
		p("CRL number", "%s", crl.Number)
	}
	if isDelta {
		if base != nil {
			p("Base CRL number", "%s (lists the changes since that full CRL; use it with the full CRL)", base)
		} else {
			p("Base CRL number", "unreadable delta CRL indicator")
		}
	}
	p("This update", "%s", crl.ThisUpdate.UTC().Format(time.RFC3339))
	p("Next update", "%s (%s)", crl.NextUpdate.UTC().Format(time.RFC3339), Remaining(crl.NextUpdate, opts.Now))
	p("Signature", "%s", crlSignature(crl))
	if alt, ok := altSignature(crl); ok {
		p("Alt signature", "%s (2.5.29.73/.74, ITU-T X.509 clause 9.8)", alt)
	}
	if uris, ok := freshestCRL(crl); ok && len(uris) == 0 {
		p("Delta CRLs at", "no URI in the Freshest CRL extension")
	} else {
		for _, u := range uris {
			p("Delta CRLs at", "%s", u)
		}
	}
	p("Revoked entries", "%d", len(crl.RevokedCertificateEntries))
	for i, e := range crl.RevokedCertificateEntries {
		if i == listedEntries {
			p("", "... %d more", len(crl.RevokedCertificateEntries)-listedEntries)
			break
		}
		line := fmt.Sprintf("%s at %s, reason %s", hex.EncodeToString(e.SerialNumber.Bytes()), e.RevocationTime.UTC().Format(time.RFC3339), reasonName(e))
		if d, ok := invalidityDate(e); ok {
			line += ", key invalid since " + d.UTC().Format(time.RFC3339)
		}
		p("  serial", "%s", line)
	}
}

// crlSignature names crl's signature algorithm, the ML-DSA and composite
// ones crypto/x509 (Go 1.26) does not know included.
func crlSignature(crl *x509.RevocationList) string {
	if crl.SignatureAlgorithm != x509.UnknownSignatureAlgorithm {
		return crl.SignatureAlgorithm.String()
	}
	// CertificateList (RFC 5280 section 5.1).
	var cl struct {
		TBS       asn1.RawValue
		Algorithm pkix.AlgorithmIdentifier
		Signature asn1.BitString
	}
	if _, err := asn1.Unmarshal(crl.Raw, &cl); err != nil {
		return "unreadable signature algorithm"
	}
	return pqc.OIDName(cl.Algorithm.Algorithm)
}

// altSignature names the algorithm of a Catalyst CRL's alternative
// signature (altSignatureAlgorithm, 2.5.29.73).
func altSignature(crl *x509.RevocationList) (string, bool) {
	x, ok := extension(crl.Extensions, oid.AltSignatureAlgorithm)
	if !ok {
		return "", false
	}
	var ai pkix.AlgorithmIdentifier
	if rest, err := asn1.Unmarshal(x.Value, &ai); err != nil || len(rest) > 0 {
		return "unreadable altSignatureAlgorithm", true
	}
	return pqc.OIDName(ai.Algorithm), true
}

// reasonName is e's CRLReason (RFC 5280 section 5.3.1) by name and code;
// an absent reasonCode (as the RFC asks for unspecified) says so.
func reasonName(e x509.RevocationListEntry) string {
	for _, x := range e.Extensions {
		if x.Id.Equal(oid.ReasonCode) {
			return fmt.Sprintf("%s (%d)", store.Reason(e.ReasonCode), e.ReasonCode)
		}
	}
	return "not given (unspecified)"
}

// deltaBase is a delta CRL's BaseCRLNumber (nil when the indicator does
// not parse) and whether crl is a delta CRL.
func deltaBase(crl *x509.RevocationList) (*big.Int, bool) {
	x, ok := extension(crl.Extensions, oid.DeltaCRLIndicator)
	if !ok {
		return nil, false
	}
	n := new(big.Int)
	if rest, err := asn1.Unmarshal(x.Value, &n); err != nil || len(rest) > 0 {
		return nil, true
	}
	return n, true
}

// freshestCRL are the URIs of a CRL's Freshest CRL extension (the
// CRLDistributionPoints syntax), made Printable (the file may be
// anyone's); ok: the extension is present.
func freshestCRL(crl *x509.RevocationList) (uris []string, ok bool) {
	x, ok := extension(crl.Extensions, oid.FreshestCRL)
	if !ok {
		return nil, false
	}
	var dps []struct {
		DistributionPoint struct {
			FullName []asn1.RawValue `asn1:"optional,tag:0"`
		} `asn1:"optional,tag:0"`
	}
	if rest, err := asn1.Unmarshal(x.Value, &dps); err != nil || len(rest) > 0 {
		return []string{"unreadable Freshest CRL extension"}, true
	}
	for _, dp := range dps {
		for _, n := range dp.DistributionPoint.FullName {
			if n.Class == asn1.ClassContextSpecific && n.Tag == 6 { // uniformResourceIdentifier
				uris = append(uris, Printable(string(n.Bytes)))
			}
		}
	}
	return uris, true
}

// Printable keeps a terminal safe from control characters in text that
// comes from a file or a store: each C0, DEL or C1 character (ECMA-48)
// becomes '?'.
func Printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '?'
		}
		return r
	}, s)
}

// invalidityDate is an entry's Invalidity Date (RFC 5280 section 5.3.2).
func invalidityDate(e x509.RevocationListEntry) (time.Time, bool) {
	x, ok := extension(e.Extensions, oid.InvalidityDate)
	if !ok {
		return time.Time{}, false
	}
	var t time.Time
	if rest, err := asn1.UnmarshalWithParams(x.Value, &t, "generalized"); err != nil || len(rest) > 0 {
		return time.Time{}, false
	}
	return t, true
}

func extension(exts []pkix.Extension, id asn1.ObjectIdentifier) (pkix.Extension, bool) {
	for _, x := range exts {
		if x.Id.Equal(id) {
			return x, true
		}
	}
	return pkix.Extension{}, false
}

package inspect

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"io"
	"math/big"
	"time"

	"github.com/meshca/meshca/ca/store"
)

// CRL and CRL entry extensions that crypto/x509 leaves undecoded (RFC 5280
// sections 5.2.4, 5.2.6 and 5.3.2).
var (
	oidDeltaCRLIndicator = asn1.ObjectIdentifier{2, 5, 29, 27}
	oidFreshestCRL       = asn1.ObjectIdentifier{2, 5, 29, 46}
	oidInvalidityDate    = asn1.ObjectIdentifier{2, 5, 29, 24}
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
	p("Signature", "%s", crl.SignatureAlgorithm)
	for _, u := range freshestCRL(crl) {
		p("Delta CRLs at", "%s", u)
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

// reasonName is e's CRLReason (RFC 5280 section 5.3.1) by name and code;
// an absent reasonCode (as the RFC asks for unspecified) says so.
func reasonName(e x509.RevocationListEntry) string {
	for _, x := range e.Extensions {
		if x.Id.Equal(oidReasonCode) {
			return fmt.Sprintf("%s (%d)", store.Reason(e.ReasonCode), e.ReasonCode)
		}
	}
	return "not given (unspecified)"
}

var oidReasonCode = asn1.ObjectIdentifier{2, 5, 29, 21}

// deltaBase is a delta CRL's BaseCRLNumber (nil when the indicator does
// not parse) and whether crl is a delta CRL.
func deltaBase(crl *x509.RevocationList) (*big.Int, bool) {
	x, ok := extension(crl.Extensions, oidDeltaCRLIndicator)
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
// CRLDistributionPoints syntax).
func freshestCRL(crl *x509.RevocationList) []string {
	x, ok := extension(crl.Extensions, oidFreshestCRL)
	if !ok {
		return nil
	}
	var dps []struct {
		DistributionPoint struct {
			FullName []asn1.RawValue `asn1:"optional,tag:0"`
		} `asn1:"optional,tag:0"`
	}
	if rest, err := asn1.Unmarshal(x.Value, &dps); err != nil || len(rest) > 0 {
		return []string{"unreadable Freshest CRL extension"}
	}
	var out []string
	for _, dp := range dps {
		for _, n := range dp.DistributionPoint.FullName {
			if n.Class == asn1.ClassContextSpecific && n.Tag == 6 { // uniformResourceIdentifier
				out = append(out, string(n.Bytes))
			}
		}
	}
	return out
}

// invalidityDate is an entry's Invalidity Date (RFC 5280 section 5.3.2).
func invalidityDate(e x509.RevocationListEntry) (time.Time, bool) {
	x, ok := extension(e.Extensions, oidInvalidityDate)
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

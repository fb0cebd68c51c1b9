package root

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"time"
)

// oidDeltaCRLIndicator marks a delta CRL (RFC 5280 section 5.2.4).
var oidDeltaCRLIndicator = asn1.ObjectIdentifier{2, 5, 29, 27}

// MaxCRLClockSkew is how far ahead of meshca's clock a root CRL's
// thisUpdate may be: relying parties refuse a CRL that is not yet valid.
const MaxCRLClockSkew = 5 * time.Minute

// RootCRLVerdict is what to do with a root CRL read from its source.
type RootCRLVerdict int

const (
	// TakeCRL: it replaces the CRL held.
	TakeCRL RootCRLVerdict = iota
	// TakeStaleCRL: it replaces the CRL held although it is past its
	// nextUpdate, since nothing fresher is held; relying parties may
	// refuse it, and the root's CA must issue a new one.
	TakeStaleCRL
	// KeepOlderNumber: it has a lower CRLNumber than the CRL held (a
	// replayed or rolled-back copy, RFC 5280 section 5.2.3); the CRL held
	// stays.
	KeepOlderNumber
	// KeepFresher: it is past its nextUpdate and the CRL held is not;
	// the CRL held stays (relying parties refuse an expired CRL, RFC 5280
	// section 6.3.3).
	KeepFresher
)

// CheckRootCRL checks c, the CRL of the root issuer as read from the
// root's source (Vault, crl.rootCRL), before meshca publishes it in
// ca-crl.pem in place of held (nil when none is held yet). An error
// refuses c: it is not issued and signed by issuer, it is a delta CRL
// (it lists only what changed since its base CRL, RFC 5280 section
// 5.2.4; handed to relying parties as the root's CRL it would be taken as
// complete, and a revocation listed only in the base would be missed),
// or its thisUpdate is more than MaxCRLClockSkew ahead of now (relying
// parties refuse a CRL that is not yet valid). Otherwise the verdict says
// whether c replaces held.
func CheckRootCRL(c, held *x509.RevocationList, issuer *x509.Certificate, now time.Time) (RootCRLVerdict, error) {
	if !bytes.Equal(c.RawIssuer, issuer.RawSubject) {
		return 0, errors.New("is not issued by the root (its issuer is not the root's subject)")
	}
	if err := c.CheckSignatureFrom(issuer); err != nil {
		return 0, fmt.Errorf("is not signed by the root: %w", err)
	}
	for _, e := range c.Extensions {
		if e.Id.Equal(oidDeltaCRLIndicator) {
			return 0, errors.New("is a delta CRL (RFC 5280 section 5.2.4); ca-crl.pem needs the root's complete CRL")
		}
	}
	if c.ThisUpdate.After(now.Add(MaxCRLClockSkew)) {
		return 0, fmt.Errorf("is not valid before %s (its thisUpdate), more than %s ahead of this host's clock", c.ThisUpdate.UTC().Format(time.RFC3339), MaxCRLClockSkew)
	}
	if held != nil && held.Number != nil && c.Number != nil && c.Number.Cmp(held.Number) < 0 {
		return KeepOlderNumber, nil
	}
	if expired(c, now) {
		if held != nil && !expired(held, now) {
			return KeepFresher, nil
		}
		return TakeStaleCRL, nil
	}
	return TakeCRL, nil
}

// expired: past its nextUpdate (a CRL without one never expires).
func expired(c *x509.RevocationList, now time.Time) bool {
	return !c.NextUpdate.IsZero() && now.After(c.NextUpdate)
}

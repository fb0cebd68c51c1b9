package root

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/meshca/meshca/ca/oid"
)

// MaxCRLClockSkew is how far ahead of meshca's clock a root CRL's
// thisUpdate may be when no usable CRL is held: relying parties refuse a
// CRL that is not yet valid, but until then there is none to publish.
const MaxCRLClockSkew = 5 * time.Minute

// RootCRLVerdict is what to do with a root CRL read from its source.
type RootCRLVerdict int

const (
	// TakeCRL: it replaces the CRL held.
	TakeCRL RootCRLVerdict = iota
	// TakeStaleCRL: it replaces the CRL held although it is past its
	// nextUpdate: nothing fresher is held, or it lists more (a greater
	// CRLNumber) than the one held. Relying parties may refuse it; the
	// issuer's CA must issue a new one.
	TakeStaleCRL
	// KeepOlderNumber: it has a lower CRLNumber than the CRL held (a
	// replayed or rolled-back copy, RFC 5280 section 5.2.3); the CRL held
	// stays.
	KeepOlderNumber
	// TakeRenumbered: it has a lower CRLNumber than the CRL held, but the
	// CRL held is past its nextUpdate, this one is valid now and was
	// issued after it (a later thisUpdate): the issuer's numbering went
	// back (a CA that lost its CRL number, a PKI mount rebuilt from the
	// same key). It replaces the CRL held, which relying parties refuse.
	// A replayed copy of an older CRL was issued before the one held, so
	// it stays refused (KeepOlderNumber) whatever its nextUpdate.
	TakeRenumbered
	// KeepIssuedBefore: it was issued before the CRL held (an earlier
	// thisUpdate, RFC 5280 section 5.1.2.4; by more than MaxCRLClockSkew
	// for a greater number) although its number is not lower: a
	// replayed copy, of the same number or of a numbering that went back
	// since (TakeRenumbered), as a CA issues its CRLs in number order.
	// The CRL held stays. (A CA whose clock went back by more than
	// MaxCRLClockSkew has its CRLs refused until it has caught up.)
	KeepIssuedBefore
	// KeepFresher: the CRL held has the same number and is still valid,
	// and this copy is past its nextUpdate, or it is not valid yet (its
	// thisUpdate is ahead of the clock): relying parties would refuse it
	// now (RFC 5280 section 6.3.3). The CRL held stays; read it again
	// later.
	KeepFresher
)

// Takes tells whether the CRL checked replaces the one held.
func (v RootCRLVerdict) Takes() bool { return v == TakeCRL || v == TakeStaleCRL || v == TakeRenumbered }

// CheckRootCRL checks c, the CRL of issuer (a root, or the CA a Vault
// mount signs with) as read from its source (Vault, crl.rootCRL), before
// meshca publishes it in ca-crl.pem in place of held (nil when none is
// held yet; a held CRL that issuer did not sign, from before a re-key,
// counts as none). ca-crl.pem is read by relying parties (Envoy, through
// OpenSSL or BoringSSL) as the complete CRL of each CA of a chain, so an
// error refuses c when it is not issued and signed by issuer (name and
// authority key identifier), when it is not a complete CRL of every
// certificate issuer signs (a delta CRL, RFC 5280 section 5.2.4; an
// issuing distribution point that narrows its scope other than to CA
// certificates, section 5.2.5; an entry for another issuer's certificate,
// section 5.3.3: OpenSSL then ignores that entry and the ones after it),
// when it has a critical extension meshca does not check (relying parties
// refuse it: "unhandled critical CRL extension"), when it has no
// nextUpdate (section 5.1.2.5: it would never expire, a replayed copy
// neither), when it has no CRLNumber while the one held has one, or when
// its thisUpdate is more than MaxCRLClockSkew ahead of now. Otherwise the
// verdict says whether c replaces held (RootCRLVerdict.Takes): never a
// lower number (unless TakeRenumbered) nor a CRL issued before held
// (KeepIssuedBefore).
func CheckRootCRL(c, held *x509.RevocationList, issuer *x509.Certificate, now time.Time) (RootCRLVerdict, error) {
	if err := checkCRLIssuer(c, issuer); err != nil {
		return 0, err
	}
	if err := checkCompleteCRL(c); err != nil {
		return 0, err
	}
	if c.NextUpdate.IsZero() {
		return 0, errors.New("has no nextUpdate (RFC 5280 section 5.1.2.5 requires it; without one it never expires)")
	}
	if c.ThisUpdate.After(now.Add(MaxCRLClockSkew)) {
		return 0, fmt.Errorf("is not valid before %s (its thisUpdate), more than %s ahead of this host's clock", c.ThisUpdate.UTC().Format(time.RFC3339), MaxCRLClockSkew)
	}
	if held != nil && checkCRLIssuer(held, issuer) != nil {
		held = nil // the issuer was re-keyed: its numbers start afresh
	}
	if held == nil {
		if expired(c, now) {
			return TakeStaleCRL, nil
		}
		return TakeCRL, nil
	}
	if held.Number != nil && c.Number == nil {
		return 0, fmt.Errorf("has no CRLNumber, and the CRL held has number %s", held.Number)
	}
	cmp := 0
	if held.Number != nil {
		cmp = c.Number.Cmp(held.Number)
	}
	switch {
	case cmp < 0 && expired(held, now) && !expired(c, now) && !c.ThisUpdate.After(now) && c.ThisUpdate.After(held.ThisUpdate):
		return TakeRenumbered, nil
	case cmp < 0:
		return KeepOlderNumber, nil
	case cmp == 0 && expired(c, now) && !expired(held, now):
		// An expired copy of the number held.
		return KeepFresher, nil
	case c.ThisUpdate.After(now) && !expired(held, now) && !held.ThisUpdate.After(now):
		// Not valid yet: the held one serves until this one is.
		return KeepFresher, nil
	case cmp == 0 && c.ThisUpdate.Before(held.ThisUpdate),
		cmp > 0 && c.ThisUpdate.Before(held.ThisUpdate.Add(-MaxCRLClockSkew)):
		// A greater number is allowed the clock skew of a CA's nodes.
		return KeepIssuedBefore, nil
	case expired(c, now):
		// Nothing usable held, or a greater number: it lists more.
		return TakeStaleCRL, nil
	}
	return TakeCRL, nil
}

// checkCRLIssuer: c names issuer as its issuer, identifies its key when
// both carry key identifiers (RFC 5280 section 5.2.1), and issuer signed
// it.
func checkCRLIssuer(c *x509.RevocationList, issuer *x509.Certificate) error {
	if !bytes.Equal(c.RawIssuer, issuer.RawSubject) {
		return fmt.Errorf("is not issued by %s (it names another issuer)", issuer.Subject)
	}
	if len(c.AuthorityKeyId) > 0 && len(issuer.SubjectKeyId) > 0 && !bytes.Equal(c.AuthorityKeyId, issuer.SubjectKeyId) {
		return fmt.Errorf("names another key of %s (its authority key identifier is not the certificate's subject key identifier)", issuer.Subject)
	}
	if err := c.CheckSignatureFrom(issuer); err != nil {
		return fmt.Errorf("is not signed by %s: %w", issuer.Subject, err)
	}
	return nil
}

// checkCompleteCRL refuses a CRL that does not list every revoked
// certificate its issuer signed, or that carries what meshca cannot vouch
// relying parties read as it does.
func checkCompleteCRL(c *x509.RevocationList) error {
	for _, e := range c.Extensions {
		switch {
		case e.Id.Equal(oid.DeltaCRLIndicator):
			return errors.New("is a delta CRL (RFC 5280 section 5.2.4): it lists only what changed since its base, and ca-crl.pem needs the complete CRL")
		case e.Id.Equal(oid.IssuingDistributionPoint):
			if err := checkIDP(e.Value); err != nil {
				return err
			}
		case e.Critical && !e.Id.Equal(oid.AuthorityKeyID):
			// OpenSSL and BoringSSL handle only a critical IDP, AKI or
			// delta indicator; anything else critical (a CRLNumber too)
			// fails every chain.
			return fmt.Errorf("has a critical extension %s that relying parties may not handle", e.Id)
		}
	}
	for _, r := range c.RevokedCertificateEntries {
		for _, e := range r.Extensions {
			if e.Id.Equal(oid.CertificateIssuer) {
				return fmt.Errorf("lists serial %x of another issuer (certificateIssuer, RFC 5280 section 5.3.3): relying parties would apply it to the entries after it too", r.SerialNumber)
			}
			if e.Critical {
				return fmt.Errorf("has a critical extension %s on the entry of serial %x that relying parties may not handle", e.Id, r.SerialNumber)
			}
		}
	}
	return nil
}

// checkIDP accepts an issuing distribution point (RFC 5280 section
// 5.2.5) that is empty or says only that the CRL covers CA certificates
// (onlyContainsCACerts TRUE, once: DER encodes no default FALSE, and
// BoringSSL refuses the whole CRL when the IDP does not decode); a
// distribution point name, user or attribute certificates only, some
// reasons only, or an indirect CRL narrow or widen what relying parties
// take it to cover.
func checkIDP(v []byte) error {
	in := cryptobyte.String(v)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return errors.New("has an issuing distribution point that does not parse")
	}
	if seq.Empty() {
		return nil
	}
	var field cryptobyte.String
	var tag cbasn1.Tag
	if !seq.ReadAnyASN1(&field, &tag) {
		return errors.New("has an issuing distribution point that does not parse")
	}
	// onlyContainsCACerts [2] IMPLICIT BOOLEAN, TRUE
	if tag != cbasn1.Tag(2).ContextSpecific() || !seq.Empty() {
		return errors.New("has an issuing distribution point that limits it to part of its issuer's certificates (RFC 5280 section 5.2.5); ca-crl.pem needs the complete CRL")
	}
	if len(field) != 1 || field[0] != 0xff {
		return errors.New("has an issuing distribution point whose onlyContainsCACerts is not DER TRUE")
	}
	return nil
}

// expired: past its nextUpdate.
func expired(c *x509.RevocationList, now time.Time) bool {
	return !c.NextUpdate.IsZero() && now.After(c.NextUpdate)
}

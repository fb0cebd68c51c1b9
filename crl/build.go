// Package crl owns revocation and RFC 5280 certificate revocation lists:
// the streaming DER builder (this file and encode*.go) and the CRL
// manager.
package crl

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/meshca/meshca/ca/certenc"
	"github.com/meshca/meshca/ca/oid"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
)

// Entry is one revoked certificate on a CRL.
type Entry struct {
	Serial         []byte       // big-endian unsigned magnitude of the serial (no leading zero needed)
	RevokedAt      time.Time    // revocationDate (RFC 5280 section 5.1.2.6)
	Reason         store.Reason // ReasonUnspecified => no reasonCode extension (RFC 5280 5.3.1)
	InvalidityDate time.Time    // zero => absent (RFC 5280 5.3.2)
}

// Entries streams the entries once; it returns the first error of its source.
// Build copies what it needs from an Entry before asking for the next one,
// so a source may reuse its buffers (the Serial slice) between entries.
type Entries func(yield func(Entry) bool) error

// Params are the CRL-wide fields of a CRL.
type Params struct {
	Issuer      *x509.Certificate // the CRL issuer: RawSubject is the CRL issuer name, SubjectKeyId the AKI
	Number      uint64            // CRLNumber (RFC 5280 5.2.3)
	ThisUpdate  time.Time
	NextUpdate  time.Time
	BaseNumber  uint64   // nonzero => delta CRL, DeltaCRLIndicator = BaseNumber (5.2.4)
	FreshestCRL []string // full CRL only: URIs of the delta CRL (FreshestCRL, 5.2.6)
}

// Signer is the CA's key(s): Key signs the CRL (ECDSA/RSA/Ed25519, or an ML-DSA / composite
// certenc.AlgorithmSigner); Alt, for a catalyst CA, adds altSignatureAlgorithm/altSignatureValue
// (2.5.29.73/.74) to the crlExtensions over the preTBSCertList (X.509 clause 9.8).
type Signer struct {
	Key crypto.Signer
	Alt certenc.AlgorithmSigner
}

// maxSerialLen is the longest serial magnitude accepted: RFC 5280
// section 4.1.2.2 limits serialNumber to 20 octets.
const maxSerialLen = 20

// Build encodes and signs a v2 CRL. It returns the DER CertificateList.
//
// The CertificateList of RFC 5280 section 5.1 is streamed: the
// revokedCertificates are encoded once, as entries yields them, into one
// buffer (through fixed chunks, see encoder.addEntries) after room left
// for the fields that precede them, whose lengths are known only at the
// end; nothing per entry is kept. For a Catalyst CA (s.Alt set) the same
// buffer first holds the preTBSCertList, which s.Alt signs, then the
// TBSCertList, which s.Key signs (ITU-T X.509 clause 9.8). Every
// signature is checked against its public key before Build returns
// (certenc.VerifyAlways: CRLs are rare, a bad one is expensive).
//
// Build refuses an issuer certificate without the cRLSign key usage
// (RFC 5280 section 4.2.1.3) or without a subject key identifier (the
// authorityKeyIdentifier of section 5.2.1), a signer whose key is not the
// issuer's, a zero CRL number, and a nextUpdate that is not after
// thisUpdate.
func Build(p Params, entries Entries, s Signer) ([]byte, error) {
	if err := checkParams(&p, &s); err != nil {
		return nil, err
	}
	key, err := certenc.NewSigner(s.Key, certenc.VerifyAlways)
	if err != nil {
		return nil, err
	}
	var alt *certenc.Signer
	if s.Alt != nil {
		if alt, err = certenc.NewSigner(s.Alt, certenc.VerifyAlways); err != nil {
			return nil, err
		}
	}
	exts, err := crlExtensions(&p)
	if err != nil {
		return nil, err
	}

	var e encoder
	e.start(key.Algorithm(), p.Issuer.RawSubject, p.ThisUpdate.UTC(), p.NextUpdate.UTC())
	if err := e.addEntries(entries); err != nil {
		return nil, err
	}

	if alt != nil {
		exts = append(exts, extension{id: oid.AltSignatureAlgorithm, value: alt.Algorithm()})
		pre, err := e.tbs(false, exts)
		if err != nil {
			return nil, err
		}
		altSig, err := alt.Sign(rand.Reader, pre)
		if err != nil {
			return nil, fmt.Errorf("crl: alternative signature: %w", err)
		}
		exts = append(exts, altSignatureValue(altSig))
	}
	tbs, err := e.tbs(true, exts)
	if err != nil {
		return nil, err
	}
	sig, err := key.Sign(rand.Reader, tbs)
	if err != nil {
		return nil, fmt.Errorf("crl: %w", err)
	}
	return e.certificateList(sig)
}

// checkParams refuses what would make a CRL no relying party accepts.
func checkParams(p *Params, s *Signer) error {
	c := p.Issuer
	switch {
	case c == nil:
		return errors.New("crl: no issuer certificate")
	case len(c.RawSubject) == 0:
		return errors.New("crl: the issuer certificate has an empty subject: it cannot name a CRL issuer")
	case c.KeyUsage&x509.KeyUsageCRLSign == 0:
		return fmt.Errorf("crl: issuer %q lacks the cRLSign key usage (RFC 5280 section 4.2.1.3): it cannot sign CRLs", c.Subject)
	case len(c.SubjectKeyId) == 0:
		return fmt.Errorf("crl: issuer %q has no subject key identifier: the CRL's authorityKeyIdentifier needs one (RFC 5280 section 5.2.1)", c.Subject)
	case p.Number == 0:
		return errors.New("crl: CRL number 0: numbers start at 1 and only increase (RFC 5280 section 5.2.3)")
	case p.BaseNumber > p.Number:
		// Equal is allowed: a delta issued with its base complete CRL has
		// the base's number (RFC 5280 section 5.2.3).
		return fmt.Errorf("crl: delta CRL number %d is less than its base CRL number %d (RFC 5280 section 5.2.4)", p.Number, p.BaseNumber)
	case p.BaseNumber != 0 && len(p.FreshestCRL) > 0:
		return errors.New("crl: a delta CRL must not carry FreshestCRL (RFC 5280 section 5.2.6)")
	case s.Key == nil:
		return errors.New("crl: no signing key")
	}
	if err := checkTime("thisUpdate", p.ThisUpdate); err != nil {
		return err
	}
	if err := checkTime("nextUpdate", p.NextUpdate); err != nil {
		return err
	}
	// DER times have whole seconds: compare what will be encoded.
	if !p.NextUpdate.Truncate(time.Second).After(p.ThisUpdate.Truncate(time.Second)) {
		return fmt.Errorf("crl: nextUpdate %s is not after thisUpdate %s", p.NextUpdate.UTC().Format(time.RFC3339), p.ThisUpdate.UTC().Format(time.RFC3339))
	}
	if err := root.CheckKeyMatches(c, s.Key); err != nil {
		return fmt.Errorf("crl: signing key for issuer %q: %w", c.Subject, err)
	}
	if s.Alt == nil {
		return nil
	}
	if _, ok := s.Key.(certenc.AlgorithmSigner); ok {
		return errors.New("crl: a Catalyst CRL needs a classical primary key (ECDSA, RSA or Ed25519)")
	}
	if err := root.CheckAltKeyMatches(c, s.Alt); err != nil {
		return fmt.Errorf("crl: alternative signing key for issuer %q: %w", c.Subject, err)
	}
	return nil
}

// SerialBytes converts a store serial (lower-case hex) to Entry.Serial.
// Upper case is accepted too; leading zero octets are dropped. A serial
// that is empty, not hex, or longer than 20 octets (RFC 5280 section
// 4.1.2.2) is an error.
func SerialBytes(hexSerial string) ([]byte, error) {
	s := hexSerial
	if len(s)%2 == 1 {
		s = "0" + s
	}
	b, err := hex.DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("crl: serial %q is not a hex serial number", hexSerial)
	}
	b = trimSerial(b)
	if len(b) > maxSerialLen {
		return nil, fmt.Errorf("crl: serial %q is longer than 20 octets (RFC 5280 section 4.1.2.2)", hexSerial)
	}
	return b, nil
}

// trimSerial drops the leading zero octets of a magnitude, keeping one
// octet for zero.
func trimSerial(b []byte) []byte {
	for len(b) > 1 && b[0] == 0 {
		b = b[1:]
	}
	return b
}

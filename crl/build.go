// Package crl owns revocation and RFC 5280 certificate revocation lists:
// the streaming DER builder (this file and encode*.go) and the CRL
// manager.
package crl

import (
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/meshca/meshca/ca/certenc"
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
func Build(p Params, entries Entries, s Signer) ([]byte, error) {
	return nil, errors.New("crl: Build is not implemented yet")
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

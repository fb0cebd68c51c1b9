package pqc

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"

	"github.com/meshca/meshca/ca/certenc"
	"github.com/meshca/meshca/ca/internal/der"
	"github.com/meshca/meshca/ca/oid"
	"github.com/meshca/meshca/ca/pqc/composite"
	"github.com/meshca/meshca/ca/pqc/mldsa"
	"golang.org/x/crypto/cryptobyte"
)

var (
	// ErrInvalidSignature: a post-quantum signature does not verify. It is
	// joined with the key package's own error (mldsa.ErrInvalidSignature or
	// composite.ErrInvalidSignature, which names the failed component).
	ErrInvalidSignature = errors.New("pqc: signature does not verify")
	// ErrNotPostQuantum: the signature algorithm is neither pure ML-DSA nor
	// composite ML-DSA.
	ErrNotPostQuantum = errors.New("pqc: not a post-quantum signature algorithm")
	// ErrKeyAlgorithmMismatch: the verifying key is not of the signature's
	// algorithm.
	ErrKeyAlgorithmMismatch = errors.New("pqc: public key does not match the signature algorithm")
	// ErrParametersPresent: an ML-DSA or composite AlgorithmIdentifier
	// carries parameters; they must be absent.
	ErrParametersPresent = errors.New("pqc: AlgorithmIdentifier parameters must be absent")
	// ErrNoAltSignature: the certificate has no 2.5.29.73/.74 pair.
	ErrNoAltSignature = errors.New("pqc: certificate has no alternative signature (2.5.29.73/2.5.29.74)")
	// ErrMalformedCatalyst: the Catalyst extensions are inconsistent or do
	// not parse.
	ErrMalformedCatalyst = errors.New("pqc: malformed Catalyst extensions")
)

func hasParameters(ai pkix.AlgorithmIdentifier) bool {
	return ai.Parameters.FullBytes != nil || ai.Parameters.Tag != 0 || ai.Parameters.Class != 0 || len(ai.Parameters.Bytes) != 0
}

// VerifySignature checks a post-quantum signature: pure ML-DSA with an
// empty context (RFC 9881) or composite ML-DSA with an empty application
// context (draft-19), by pub over signed. pub is an *mldsa.PublicKey or a
// *composite.PublicKey of alg; for composite, both components must verify.
func VerifySignature(alg pkix.AlgorithmIdentifier, pub crypto.PublicKey, signed, signature []byte) error {
	return verifySignature(alg.Algorithm, hasParameters(alg), pub, signed, signature)
}

func verifySignature(oid asn1.ObjectIdentifier, params bool, pub crypto.PublicKey, signed, signature []byte) error {
	var err error
	switch familyOf(oid) {
	case familyMLDSA:
		p, _ := mldsa.ParameterSetByOID(oid)
		k, ok := pub.(*mldsa.PublicKey)
		if !ok || k.ParameterSet() != p {
			return fmt.Errorf("%w: %s signature, %s key", ErrKeyAlgorithmMismatch, p.Name(), keyName(pub))
		}
		if params {
			return fmt.Errorf("%w (%s)", ErrParametersPresent, p.Name())
		}
		err = k.Verify(signed, signature)
	case familyComposite:
		a, _ := composite.AlgorithmByOID(oid)
		k, ok := pub.(*composite.PublicKey)
		if !ok || k.Algorithm() != a {
			return fmt.Errorf("%w: %s signature, %s key", ErrKeyAlgorithmMismatch, a.Name(), keyName(pub))
		}
		if params {
			return fmt.Errorf("%w (%s)", ErrParametersPresent, a.Name())
		}
		err = k.Verify(signed, signature)
	case familyHashMLDSA:
		return fmt.Errorf("%w (%s)", mldsa.ErrHashMLDSA, OIDName(oid))
	default:
		return fmt.Errorf("%w: %s", ErrNotPostQuantum, OIDName(oid))
	}
	if errors.Is(err, mldsa.ErrInvalidSignature) || errors.Is(err, composite.ErrInvalidSignature) {
		return invalidSignature{err}
	}
	return err
}

// invalidSignature reads as the key package's error and also matches
// ErrInvalidSignature.
type invalidSignature struct{ err error }

func (e invalidSignature) Error() string   { return e.err.Error() }
func (e invalidSignature) Unwrap() []error { return []error{ErrInvalidSignature, e.err} }

// keyName names a public key's algorithm for error messages.
func keyName(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *mldsa.PublicKey:
		return k.ParameterSet().Name()
	case *composite.PublicKey:
		return k.Algorithm().Name()
	case nil:
		return "no"
	}
	return fmt.Sprintf("%T", pub)
}

// VerifyCertificateSignature checks cert's own signature, which must be
// pure ML-DSA or composite ML-DSA, with the issuer's DER
// SubjectPublicKeyInfo (the certificate's own for a self-signed one).
// Classical signatures are crypto/x509's business: they return
// ErrNotPostQuantum.
func VerifyCertificateSignature(cert *x509.Certificate, issuerSPKI []byte) error {
	f, err := certenc.ParseCertificate(cert.Raw)
	if err != nil {
		return err
	}
	switch familyOf(f.SignatureAlgorithm) {
	case familyOther:
		return fmt.Errorf("%w: %s", ErrNotPostQuantum, OIDName(f.SignatureAlgorithm))
	case familyHashMLDSA:
		return fmt.Errorf("%w (%s)", mldsa.ErrHashMLDSA, OIDName(f.SignatureAlgorithm))
	}
	pub, err := ParsePKIXPublicKey(issuerSPKI)
	if err != nil {
		return fmt.Errorf("pqc: issuer public key: %w", err)
	}
	return verifySignature(f.SignatureAlgorithm, f.SignatureParameters, pub, f.RawTBS, f.Signature)
}

// Catalyst holds a certificate's ITU-T X.509 alternative-signature
// extensions. Any of them may be absent: an intermediate signed by a
// classical root carries only its alternative public key.
type Catalyst struct {
	// SubjectAltPublicKeyInfo is the DER SubjectPublicKeyInfo of
	// 2.5.29.72, nil when absent.
	SubjectAltPublicKeyInfo []byte
	// SubjectAltPublicKeyCritical reports 2.5.29.72 marked critical
	// (Bouncy Castle does; meshca does not).
	SubjectAltPublicKeyCritical bool
	// AltSignatureAlgorithm is 2.5.29.73, nil when absent.
	AltSignatureAlgorithm *pkix.AlgorithmIdentifier
	// AltSignatureValue is the content of the 2.5.29.74 BIT STRING, nil
	// when absent.
	AltSignatureValue []byte
}

// HasAltSignature reports whether the 2.5.29.73/.74 pair is present.
func (c *Catalyst) HasAltSignature() bool { return c != nil && c.AltSignatureValue != nil }

// ParseCatalyst returns cert's Catalyst extensions, or nil when it has
// none. 2.5.29.73 and 2.5.29.74 must come together, and every value must
// parse.
func ParseCatalyst(cert *x509.Certificate) (*Catalyst, error) {
	f, err := certenc.ParseTBS(cert.RawTBSCertificate)
	if err != nil {
		return nil, err
	}
	return parseCatalyst(f)
}

func parseCatalyst(f *certenc.TBS) (*Catalyst, error) {
	spki, alg, val := f.Extension(oid.SubjectAltPublicKeyInfo), f.Extension(oid.AltSignatureAlgorithm), f.Extension(oid.AltSignatureValue)
	if spki == nil && alg == nil && val == nil {
		return nil, nil
	}
	c := &Catalyst{}
	if spki != nil {
		if _, err := der.ParsePublicKeyInfo(spki.Value); err != nil {
			return nil, fmt.Errorf("%w: subjectAltPublicKeyInfo: %v", ErrMalformedCatalyst, err)
		}
		c.SubjectAltPublicKeyInfo = spki.Value
		c.SubjectAltPublicKeyCritical = spki.Critical
	}
	if (alg == nil) != (val == nil) {
		return nil, fmt.Errorf("%w: altSignatureAlgorithm and altSignatureValue must both be present or both absent", ErrMalformedCatalyst)
	}
	if alg != nil {
		var ai pkix.AlgorithmIdentifier
		if rest, err := asn1.Unmarshal(alg.Value, &ai); err != nil || len(rest) != 0 {
			return nil, fmt.Errorf("%w: altSignatureAlgorithm does not parse", ErrMalformedCatalyst)
		}
		c.AltSignatureAlgorithm = &ai
		s := cryptobyte.String(val.Value)
		var bits asn1.BitString
		if !s.ReadASN1BitString(&bits) || !s.Empty() || bits.BitLength%8 != 0 {
			return nil, fmt.Errorf("%w: altSignatureValue is not an octet-aligned BIT STRING", ErrMalformedCatalyst)
		}
		c.AltSignatureValue = append([]byte{}, bits.Bytes...)
	}
	return c, nil
}

// VerifyAltSignature checks cert's Catalyst alternative signature
// (2.5.29.74, algorithm 2.5.29.73) over certenc.PreTBS(cert's TBS) with the
// issuer's alternative public key: the DER SPKI from the issuer's 2.5.29.72
// (for a self-signed certificate, its own). The algorithm must be pure
// ML-DSA or composite ML-DSA.
func VerifyAltSignature(cert *x509.Certificate, issuerAltSPKI []byte) error {
	f, err := certenc.ParseTBS(cert.RawTBSCertificate)
	if err != nil {
		return err
	}
	c, err := parseCatalyst(f)
	if err != nil {
		return err
	}
	if !c.HasAltSignature() {
		return ErrNoAltSignature
	}
	pre, err := certenc.PreTBS(cert.RawTBSCertificate)
	if err != nil {
		return err
	}
	pub, err := ParsePKIXPublicKey(issuerAltSPKI)
	if err != nil {
		return fmt.Errorf("pqc: issuer alternative public key: %w", err)
	}
	return VerifySignature(*c.AltSignatureAlgorithm, pub, pre, c.AltSignatureValue)
}

package pqc

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"

	"github.com/meshca/meshca/ca/certenc"
	"github.com/meshca/meshca/ca/internal/der"
	"github.com/meshca/meshca/ca/pqc/composite"
	"github.com/meshca/meshca/ca/pqc/mldsa"
)

var (
	// ErrNoPQSignature: a certificate that must carry a post-quantum
	// signature (ML-DSA, composite or Catalyst alternative) has none.
	ErrNoPQSignature = errors.New("pqc: certificate carries no post-quantum signature")
	// ErrNoPQPublicKey: a certificate (an issuer or an anchor) has no
	// post-quantum public key: its SPKI is classical and it has no
	// 2.5.29.72 subjectAltPublicKeyInfo.
	ErrNoPQPublicKey = errors.New("pqc: certificate has no post-quantum public key")
	// ErrNotAnchored: the chain's post-quantum signatures never reach a
	// trusted PQ key.
	ErrNotAnchored = errors.New("pqc: post-quantum chain does not reach a trusted anchor")
	// ErrIssuerMismatch: a certificate's issuer name is not the next
	// certificate's subject name.
	ErrIssuerMismatch = errors.New("pqc: issuer name does not match the next certificate's subject")
)

// ChainError says which certificate of a chain failed which check.
type ChainError struct {
	Index   int    // position in the chain, 0 = leaf
	Subject string // the certificate's subject, for people
	Check   string // e.g. "alt signature (ML-DSA-65) by chain[1]'s alt public key"
	Err     error
}

func (e *ChainError) Error() string {
	return fmt.Sprintf("pqc: chain[%d] (%s): %s: %v", e.Index, e.Subject, e.Check, e.Err)
}

func (e *ChainError) Unwrap() error { return e.Err }

// TrustAnchor is a trusted post-quantum public key. meshca anchors the PQ
// chain either at a root certificate or, when the enterprise root is
// classical, at its own intermediate's ML-DSA key.
type TrustAnchor struct {
	name string
	spki []byte
	pub  crypto.PublicKey
}

// AnchorFromPublicKeyInfo trusts a bare DER SubjectPublicKeyInfo of an
// ML-DSA or composite key. name is used in errors and logs.
func AnchorFromPublicKeyInfo(name string, spki []byte) (TrustAnchor, error) {
	pub, err := ParsePKIXPublicKey(spki)
	if err != nil {
		return TrustAnchor{}, fmt.Errorf("pqc: anchor %q: %w", name, err)
	}
	switch pub.(type) {
	case *mldsa.PublicKey, *composite.PublicKey:
	default:
		return TrustAnchor{}, fmt.Errorf("pqc: anchor %q: %w: %T is classical", name, ErrNoPQPublicKey, pub)
	}
	return TrustAnchor{name: name, spki: bytes.Clone(spki), pub: pub}, nil
}

// AnchorFromCertificate trusts a certificate's post-quantum key: its
// SubjectPublicKeyInfo when that is ML-DSA or composite, otherwise its
// Catalyst 2.5.29.72 alternative key. The certificate's own signatures are
// not checked: an anchor is trusted by configuration.
func AnchorFromCertificate(cert *x509.Certificate) (TrustAnchor, error) {
	spki, err := pqPublicKeyInfo(cert)
	if err != nil {
		return TrustAnchor{}, err
	}
	return AnchorFromPublicKeyInfo(cert.Subject.String(), spki)
}

// Name returns the anchor's name.
func (a TrustAnchor) Name() string { return a.name }

// PublicKeyInfo returns the anchor's DER SubjectPublicKeyInfo.
func (a TrustAnchor) PublicKeyInfo() []byte { return bytes.Clone(a.spki) }

// pqPublicKeyInfo returns the certificate's PQ SPKI: its own when PQ,
// else its Catalyst alternative key.
func pqPublicKeyInfo(cert *x509.Certificate) ([]byte, error) {
	f, err := certenc.ParseTBS(cert.RawTBSCertificate)
	if err != nil {
		return nil, err
	}
	if spkiFamily(cert.RawSubjectPublicKeyInfo) != familyOther {
		return cert.RawSubjectPublicKeyInfo, nil
	}
	c, err := parseCatalyst(f)
	if err != nil {
		return nil, err
	}
	if c == nil || c.SubjectAltPublicKeyInfo == nil {
		return nil, fmt.Errorf("%w (%s)", ErrNoPQPublicKey, cert.Subject)
	}
	return c.SubjectAltPublicKeyInfo, nil
}

func spkiFamily(spki []byte) family {
	info, err := der.ParsePublicKeyInfo(spki)
	if err != nil {
		return familyOther
	}
	return familyOf(info.Algorithm)
}

// pqSignature is one post-quantum signature on a certificate.
type pqSignature struct {
	alt       bool // Catalyst alternative signature rather than the certificate's own
	oid       asn1.ObjectIdentifier
	params    bool
	signed    []byte
	signature []byte
}

func (s pqSignature) describe() string {
	if s.alt {
		return "alt signature (" + OIDName(s.oid) + ")"
	}
	return "signature (" + OIDName(s.oid) + ")"
}

// issuerKey returns the SPKI that must verify s: the issuer's own SPKI for
// its primary signature, the issuer's 2.5.29.72 for an alt signature.
func (s pqSignature) issuerKey(issuer *x509.Certificate) ([]byte, error) {
	if !s.alt {
		return issuer.RawSubjectPublicKeyInfo, nil
	}
	c, err := ParseCatalyst(issuer)
	if err != nil {
		return nil, err
	}
	if c == nil || c.SubjectAltPublicKeyInfo == nil {
		return nil, fmt.Errorf("%w: no subjectAltPublicKeyInfo (2.5.29.72)", ErrNoPQPublicKey)
	}
	return c.SubjectAltPublicKeyInfo, nil
}

func pqSignatures(cert *x509.Certificate) ([]pqSignature, error) {
	f, err := certenc.ParseCertificate(cert.Raw)
	if err != nil {
		return nil, err
	}
	var sigs []pqSignature
	if fam := familyOf(f.SignatureAlgorithm); fam != familyOther {
		sigs = append(sigs, pqSignature{oid: f.SignatureAlgorithm, params: f.SignatureParameters, signed: f.RawTBS, signature: f.Signature})
	}
	c, err := parseCatalyst(f.TBS)
	if err != nil {
		return nil, err
	}
	if c.HasAltSignature() {
		pre, err := certenc.PreTBS(f.RawTBS)
		if err != nil {
			return nil, err
		}
		sigs = append(sigs, pqSignature{alt: true, oid: c.AltSignatureAlgorithm.Algorithm,
			params: hasParameters(*c.AltSignatureAlgorithm), signed: pre, signature: c.AltSignatureValue})
	}
	return sigs, nil
}

// VerifyChain checks the post-quantum signatures of chain (leaf first, each
// certificate followed by its issuer) up to a trusted PQ key.
//
// Every post-quantum signature of a certificate (its own ML-DSA or
// composite signature, its Catalyst alternative signature, or both) must
// verify, either under an anchor or under the next certificate's matching
// key (its SPKI for a primary signature, its 2.5.29.72 for an alternative
// one; a self-issued last certificate is its own issuer). For composite
// signatures both components must verify. The walk stops successfully at
// the first certificate whose PQ signature verifies under an anchor, so
// certificates above it (such as a classical enterprise root) are not
// examined. Otherwise ErrNotAnchored is returned.
//
// VerifyChain checks signatures and name chaining only; validity periods,
// key usage, basic constraints and the classical signatures are
// crypto/x509's job. Errors are *ChainError values naming the certificate
// and the check.
func VerifyChain(chain []*x509.Certificate, anchors ...TrustAnchor) error {
	if len(chain) == 0 {
		return errors.New("pqc: empty chain")
	}
	if len(anchors) == 0 {
		return fmt.Errorf("%w: no trust anchors given", ErrNotAnchored)
	}
	for i, cert := range chain {
		fail := func(check string, err error) error {
			return &ChainError{Index: i, Subject: cert.Subject.String(), Check: check, Err: err}
		}
		sigs, err := pqSignatures(cert)
		if err != nil {
			return fail("parse", err)
		}
		if len(sigs) == 0 {
			return fail("post-quantum signature", ErrNoPQSignature)
		}
		anchored := false
		for _, s := range sigs {
			if anchorVerifies(anchors, s) {
				anchored = true
				continue
			}
			issuer, idx := issuerOf(chain, i)
			if issuer == nil {
				return fail(s.describe(), fmt.Errorf("%w: its issuer is not in the chain and no anchor verifies it", ErrNotAnchored))
			}
			if !bytes.Equal(cert.RawIssuer, issuer.RawSubject) {
				return fail("issuer name", fmt.Errorf("%w: issuer %q, chain[%d] subject %q", ErrIssuerMismatch, cert.Issuer, idx, issuer.Subject))
			}
			keySource := fmt.Sprintf("chain[%d]'s public key", idx)
			if s.alt {
				keySource = fmt.Sprintf("chain[%d]'s alt public key", idx)
			}
			spki, err := s.issuerKey(issuer)
			if err != nil {
				return fail(s.describe()+" by "+keySource, err)
			}
			pub, err := ParsePKIXPublicKey(spki)
			if err != nil {
				return fail(s.describe()+" by "+keySource, err)
			}
			if err := verifySignature(s.oid, s.params, pub, s.signed, s.signature); err != nil {
				return fail(s.describe()+" by "+keySource, err)
			}
			if idx == i {
				return fail(s.describe(), fmt.Errorf("%w: self-signed, but its key is not a trusted anchor", ErrNotAnchored))
			}
		}
		if anchored {
			return nil
		}
	}
	return nil // unreachable: the last certificate either anchors or fails
}

// anchorVerifies reports whether an anchor of the signature's algorithm
// verifies s.
func anchorVerifies(anchors []TrustAnchor, s pqSignature) bool {
	for _, a := range anchors {
		if verifySignature(s.oid, s.params, a.pub, s.signed, s.signature) == nil {
			return true
		}
	}
	return false
}

// issuerOf returns the certificate that issued chain[i]: the next one, or
// chain[i] itself when it is the last and self-issued.
func issuerOf(chain []*x509.Certificate, i int) (*x509.Certificate, int) {
	if i+1 < len(chain) {
		return chain[i+1], i + 1
	}
	if bytes.Equal(chain[i].RawIssuer, chain[i].RawSubject) {
		return chain[i], i
	}
	return nil, -1
}

// VerifyChainDER is VerifyChain for DER certificates.
func VerifyChainDER(chain [][]byte, anchors ...TrustAnchor) error {
	certs := make([]*x509.Certificate, len(chain))
	for i, der := range chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return &ChainError{Index: i, Subject: "?", Check: "parse", Err: err}
		}
		certs[i] = c
	}
	return VerifyChain(certs, anchors...)
}

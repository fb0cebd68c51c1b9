package root

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"time"

	"github.com/meshca/meshca/ca/certenc"
	"github.com/meshca/meshca/ca/oid"
	"github.com/meshca/meshca/ca/pqc"
)

// CAPQKeyFile is the optional ML-DSA key of a pre-issued Catalyst
// intermediate (mode b): the private half of ca-cert.pem's 2.5.29.72.
const CAPQKeyFile = "ca-pq-key.pem"

// CAKey is the keys of one CA certificate, for every profile.
type CAKey struct {
	// Signer makes the certificate's own signature: a classical key for the
	// classical and catalyst profiles, an ML-DSA or composite key (a
	// certenc.AlgorithmSigner) for the mldsa and composite profiles.
	Signer crypto.Signer
	// Alt is a catalyst CA's ML-DSA key, nil otherwise. Its public key is
	// the certificate's 2.5.29.72 subjectAltPublicKeyInfo, and it makes the
	// alternative signatures (2.5.29.73/.74) of what the CA signs.
	Alt certenc.AlgorithmSigner
}

// spkis returns the DER SubjectPublicKeyInfo of the primary and (when
// present) the alternative key.
func (k CAKey) spkis() (primary, alt []byte, err error) {
	if k.Signer == nil {
		return nil, nil, errors.New("no signing key")
	}
	if primary, err = pqc.MarshalPKIXPublicKey(k.Signer.Public()); err != nil {
		return nil, nil, err
	}
	if k.Alt != nil {
		if alt, err = pqc.MarshalPKIXPublicKey(k.Alt.Public()); err != nil {
			return nil, nil, err
		}
	}
	return primary, alt, nil
}

// NewRoot creates a self-signed root for k with ca/certenc: classical;
// Catalyst when k.Alt is set (carrying its own ML-DSA key as 2.5.29.72 and
// alt-signed by it); or pure ML-DSA / composite when k.Signer is one.
func NewRoot(k CAKey, commonName, org string, lifetime time.Duration, now time.Time) (*x509.Certificate, error) {
	tmpl, err := rootTemplate(commonName, org, lifetime, now)
	if err != nil {
		return nil, err
	}
	spki, altSPKI, err := k.spkis()
	if err != nil {
		return nil, fmt.Errorf("root key: %w", err)
	}
	if tmpl.SubjectKeyId, err = certenc.SubjectKeyID(spki); err != nil {
		return nil, err
	}
	t := &certenc.Template{Certificate: tmpl, PublicKey: spki}
	// CA certificates are minted rarely: every signature is checked,
	// software keys included (issuance.verifySignatures is for leaves).
	var der []byte
	if k.Alt != nil {
		der, err = certenc.BuildCatalyst(t, k.Signer, certenc.Catalyst{Issuer: k.Alt, SubjectPublicKey: altSPKI}, rand.Reader, certenc.VerifyAlways)
	} else {
		der, err = certenc.Build(t, k.Signer, rand.Reader, certenc.VerifyAlways)
	}
	if err != nil {
		return nil, fmt.Errorf("sign root: %w", err)
	}
	return x509.ParseCertificate(der)
}

// Mint signs subject's keys as a pathlen-0 intermediate under parent (the
// same shape as MintIntermediate), with ca/certenc, for every profile:
//
//   - parentKey.Signer makes the signature (classical, ML-DSA or composite);
//   - a Catalyst parent (parentKey.Alt set) adds the alternative signature;
//   - a Catalyst subject (subject.Alt set) carries its ML-DSA key as
//     2.5.29.72 even under a classical parent (an enterprise root): the
//     post-quantum chain is then anchored at the intermediate itself.
//
// SubjectKeyId is the RFC 7093 hash of the subject key, AuthorityKeyId the
// parent's SubjectKeyId (when it has one).
func Mint(parent *x509.Certificate, parentKey CAKey, subject CAKey, t IntermediateTemplate, now time.Time) (*x509.Certificate, error) {
	spki, altSPKI, err := subject.spkis()
	if err != nil {
		return nil, fmt.Errorf("intermediate key: %w", err)
	}
	return mintSPKI(parent, parentKey, spki, altSPKI, t, now)
}

// mintSPKI is Mint for the subject's DER SubjectPublicKeyInfo spki and,
// for a catalyst subject, its ML-DSA altSPKI (nil otherwise).
func mintSPKI(parent *x509.Certificate, parentKey CAKey, spki, altSPKI []byte, t IntermediateTemplate, now time.Time) (*x509.Certificate, error) {
	tmpl, err := intermediateTemplate(parent, t, now)
	if err != nil {
		return nil, err
	}
	if tmpl.SubjectKeyId, err = certenc.SubjectKeyID(spki); err != nil {
		return nil, err
	}
	tmpl.AuthorityKeyId = parent.SubjectKeyId
	ct := &certenc.Template{Certificate: tmpl, PublicKey: spki, Issuer: parent.RawSubject}
	var der []byte
	switch {
	case parentKey.Alt != nil:
		der, err = certenc.BuildCatalyst(ct, parentKey.Signer, certenc.Catalyst{Issuer: parentKey.Alt, SubjectPublicKey: altSPKI}, rand.Reader, certenc.VerifyAlways)
	case altSPKI != nil:
		tmpl.ExtraExtensions = []pkix.Extension{{Id: oid.SubjectAltPublicKeyInfo, Value: altSPKI}}
		der, err = certenc.Build(ct, parentKey.Signer, rand.Reader, certenc.VerifyAlways)
	default:
		der, err = certenc.Build(ct, parentKey.Signer, rand.Reader, certenc.VerifyAlways)
	}
	if err != nil {
		return nil, fmt.Errorf("sign intermediate: %w", err)
	}
	return x509.ParseCertificate(der)
}

// SignedPostQuantum reports whether c's own signature is pure ML-DSA or
// composite ML-DSA, which crypto/x509 (Go 1.26) cannot check.
func SignedPostQuantum(c *x509.Certificate) bool {
	if c.SignatureAlgorithm != x509.UnknownSignatureAlgorithm {
		return false
	}
	d, err := pqc.Describe(c)
	return err == nil && (d.Signature.Family == pqc.FamilyMLDSA || d.Signature.Family == pqc.FamilyComposite)
}

// CheckSignatureFrom is x509.Certificate.CheckSignatureFrom for every
// profile: ML-DSA and composite signatures are checked with ca/pqc (both
// components for composite), after the same CA constraints on parent.
func CheckSignatureFrom(c, parent *x509.Certificate) error {
	if !SignedPostQuantum(c) {
		return c.CheckSignatureFrom(parent)
	}
	if parent.Version == 3 && !parent.BasicConstraintsValid || parent.BasicConstraintsValid && !parent.IsCA {
		return x509.ConstraintViolationError{}
	}
	if parent.KeyUsage != 0 && parent.KeyUsage&x509.KeyUsageCertSign == 0 {
		return x509.ConstraintViolationError{}
	}
	return pqc.VerifyCertificateSignature(c, parent.RawSubjectPublicKeyInfo)
}

// IssuedBy reports whether issuer issued c: c's issuer name is issuer's
// subject (RFC 5280 section 4.1.2.4), c's authority key identifier, when
// both are present, is issuer's subject key identifier (section 4.2.1.1),
// and c's signature verifies under issuer's key (CheckSignatureFrom, ML-DSA
// and composite too). Names and key identifiers are public: only the
// signature tells two CAs of one name apart for certain, as during a root
// rotation that keeps the root's name (section 6.1 chooses the issuer by
// its name and then its key).
func IssuedBy(c, issuer *x509.Certificate) bool {
	if !bytes.Equal(c.RawIssuer, issuer.RawSubject) {
		return false
	}
	if len(c.AuthorityKeyId) > 0 && len(issuer.SubjectKeyId) > 0 && !bytes.Equal(c.AuthorityKeyId, issuer.SubjectKeyId) {
		return false
	}
	return CheckSignatureFrom(c, issuer) == nil
}

// AltPublicKeyInfo returns c's 2.5.29.72 subjectAltPublicKeyInfo (DER), or
// nil when it has none.
func AltPublicKeyInfo(c *x509.Certificate) ([]byte, error) {
	cat, err := pqc.ParseCatalyst(c)
	if err != nil || cat == nil {
		return nil, err
	}
	return cat.SubjectAltPublicKeyInfo, nil
}

// CheckAltKeyMatches checks that alt is the private half of c's 2.5.29.72.
func CheckAltKeyMatches(c *x509.Certificate, alt crypto.Signer) error {
	want, err := AltPublicKeyInfo(c)
	if err != nil {
		return err
	}
	if want == nil {
		return errors.New("has no ML-DSA alternative public key (2.5.29.72)")
	}
	got, err := pqc.MarshalPKIXPublicKey(alt.Public())
	if err != nil || !bytes.Equal(got, want) {
		return errors.New("the ML-DSA key does not match the certificate's alternative public key (2.5.29.72)")
	}
	return nil
}

// VerifyPQ checks the post-quantum signatures of the bundle's chain (Cert,
// its intermediates and the root it chains to) with pqc.VerifyChain, up to
// one of anchors: the Catalyst alternative chain, or a composite or pure
// ML-DSA chain.
func (b *Bundle) VerifyPQ(anchors ...pqc.TrustAnchor) error {
	return pqc.VerifyChain(b.Chain(), anchors...)
}

// verifyPQ is Verify for a chain signed with ML-DSA or composite keys:
// validity at now, CA constraints, name chaining and every signature (with
// ca/pqc) up to one of Roots, which are the trusted anchors.
func (b *Bundle) verifyPQ(now time.Time) error {
	chain := append([]*x509.Certificate{b.Cert}, b.Intermediates...)
	for _, c := range chain {
		if err := CheckValidAt(c, now); err != nil {
			return fmt.Errorf("%s %w", c.Subject, err)
		}
	}
	for _, c := range chain[1:] {
		if err := CheckSigningCA(c); err != nil {
			return fmt.Errorf("%s %w", c.Subject, err)
		}
	}
	top := chain[len(chain)-1]
	var errs []error
	for _, r := range b.Roots {
		if !bytes.Equal(top.RawIssuer, r.RawSubject) {
			continue
		}
		if err := CheckValidAt(r, now); err != nil {
			errs = append(errs, fmt.Errorf("root %s %w", r.Subject, err))
			continue
		}
		if err := CheckIssuer(r); err != nil {
			errs = append(errs, fmt.Errorf("root %s %w", r.Subject, err))
			continue
		}
		anchor, err := pqc.AnchorFromCertificate(r)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := pqc.VerifyChain(append(chain, r), anchor); err != nil {
			errs = append(errs, err)
			continue
		}
		return nil
	}
	if len(errs) == 0 {
		return fmt.Errorf("post-quantum chain: no root is named %s", top.Issuer)
	}
	return fmt.Errorf("post-quantum chain: %w", errors.Join(errs...))
}

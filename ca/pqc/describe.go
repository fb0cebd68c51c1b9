package pqc

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"strings"

	"github.com/meshca/meshca/ca/certenc"
	"github.com/meshca/meshca/ca/internal/der"
	"github.com/meshca/meshca/ca/pqc/composite"
	"github.com/meshca/meshca/ca/pqc/mldsa"
)

// Algorithm families reported by Describe.
const (
	FamilyMLDSA     = "ML-DSA"
	FamilyComposite = "composite ML-DSA"
	FamilyHashMLDSA = "HashML-DSA"
	FamilyClassical = "classical"
)

// Profiles reported by Describe.
const (
	ProfilePureMLDSA   = "pure ML-DSA"
	ProfileComposite   = "composite ML-DSA"
	ProfileCatalyst    = "Catalyst hybrid (classical signature + alternative post-quantum signature)"
	ProfileCatalystKey = "Catalyst alternative public key only (no alternative signature)"
	ProfileClassical   = "classical (no post-quantum signature)"
	ProfileHashMLDSA   = "HashML-DSA (not accepted by meshca)"
)

// AlgorithmInfo describes one key or signature algorithm.
type AlgorithmInfo struct {
	OID    asn1.ObjectIdentifier
	Name   string // OIDName(OID)
	Family string // FamilyMLDSA, FamilyComposite, FamilyHashMLDSA or FamilyClassical
	Detail string // sizes and components, e.g. "1952-byte public key, NIST category 3"
}

func (a AlgorithmInfo) String() string {
	s := fmt.Sprintf("%s (%s)", a.Name, a.OID)
	if a.Detail != "" {
		s += ": " + a.Detail
	}
	return s
}

// Description is the post-quantum view of a certificate, for
// `meshca inspect`.
type Description struct {
	Profile   string
	PublicKey AlgorithmInfo
	Signature AlgorithmInfo
	// Catalyst extensions; nil / zero when absent.
	AltPublicKey         *AlgorithmInfo
	AltPublicKeyCritical bool
	AltSignature         *AlgorithmInfo
	AltSignatureSize     int // bytes in 2.5.29.74
}

// Describe returns the post-quantum facts of cert: what its key and
// signature are, and its Catalyst alternative key and signature if any.
// It verifies nothing.
func Describe(cert *x509.Certificate) (*Description, error) {
	f, err := certenc.ParseCertificate(cert.Raw)
	if err != nil {
		return nil, err
	}
	d := &Description{Signature: signatureInfo(f.SignatureAlgorithm, len(f.Signature))}
	if d.PublicKey, err = keyInfo(cert.RawSubjectPublicKeyInfo); err != nil {
		return nil, err
	}
	c, err := parseCatalyst(f.TBS)
	if err != nil {
		return nil, err
	}
	if c != nil && c.SubjectAltPublicKeyInfo != nil {
		k, err := keyInfo(c.SubjectAltPublicKeyInfo)
		if err != nil {
			return nil, fmt.Errorf("pqc: subjectAltPublicKeyInfo: %w", err)
		}
		d.AltPublicKey, d.AltPublicKeyCritical = &k, c.SubjectAltPublicKeyCritical
	}
	if c.HasAltSignature() {
		s := signatureInfo(c.AltSignatureAlgorithm.Algorithm, len(c.AltSignatureValue))
		d.AltSignature, d.AltSignatureSize = &s, len(c.AltSignatureValue)
	}
	switch {
	case d.Signature.Family == FamilyMLDSA:
		d.Profile = ProfilePureMLDSA
	case d.Signature.Family == FamilyComposite:
		d.Profile = ProfileComposite
	case d.Signature.Family == FamilyHashMLDSA:
		d.Profile = ProfileHashMLDSA
	case d.AltSignature != nil:
		d.Profile = ProfileCatalyst
	case d.AltPublicKey != nil:
		d.Profile = ProfileCatalystKey
	default:
		d.Profile = ProfileClassical
	}
	return d, nil
}

// String renders the description as indented lines.
func (d *Description) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Post-quantum profile: %s\n", d.Profile)
	fmt.Fprintf(&b, "  Public key: %s\n", d.PublicKey)
	fmt.Fprintf(&b, "  Signature:  %s\n", d.Signature)
	if d.AltPublicKey != nil {
		crit := "non-critical"
		if d.AltPublicKeyCritical {
			crit = "critical"
		}
		fmt.Fprintf(&b, "  Alt public key (2.5.29.72, %s): %s\n", crit, d.AltPublicKey)
	}
	if d.AltSignature != nil {
		fmt.Fprintf(&b, "  Alt signature (2.5.29.73/.74, %d bytes): %s\n", d.AltSignatureSize, d.AltSignature)
	}
	return b.String()
}

func familyName(oid asn1.ObjectIdentifier) string {
	switch familyOf(oid) {
	case familyMLDSA:
		return FamilyMLDSA
	case familyComposite:
		return FamilyComposite
	case familyHashMLDSA:
		return FamilyHashMLDSA
	}
	return FamilyClassical
}

func keyInfo(spki []byte) (AlgorithmInfo, error) {
	info, err := der.ParsePublicKeyInfo(spki)
	if err != nil {
		return AlgorithmInfo{}, fmt.Errorf("pqc: %w", err)
	}
	a := AlgorithmInfo{OID: info.Algorithm, Name: OIDName(info.Algorithm), Family: familyName(info.Algorithm)}
	switch a.Family {
	case FamilyMLDSA:
		p, _ := mldsa.ParameterSetByOID(info.Algorithm)
		a.Detail = fmt.Sprintf("%d-byte public key, NIST category %d", len(info.PublicKey), p.SecurityCategory())
	case FamilyComposite:
		alg, _ := composite.AlgorithmByOID(info.Algorithm)
		a.Detail = fmt.Sprintf("%s (%d-byte key) + %s (%d-byte key)", alg.MLDSA().Name(), alg.MLDSA().PublicKeySize(),
			alg.Traditional(), len(info.PublicKey)-alg.MLDSA().PublicKeySize())
	case FamilyHashMLDSA:
		a.Detail = fmt.Sprintf("%d-byte public key; HashML-DSA is not accepted by meshca", len(info.PublicKey))
	default:
		a.Detail = classicalKeyDetail(spki)
	}
	return a, nil
}

func classicalKeyDetail(spki []byte) string {
	pub, err := x509.ParsePKIXPublicKey(spki)
	if err != nil {
		return "unparsed key"
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d-bit", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T", pub)
}

func signatureInfo(oid asn1.ObjectIdentifier, size int) AlgorithmInfo {
	a := AlgorithmInfo{OID: oid, Name: OIDName(oid), Family: familyName(oid)}
	switch a.Family {
	case FamilyMLDSA:
		a.Detail = fmt.Sprintf("pure ML-DSA, empty context, %d-byte signature", size)
	case FamilyComposite:
		alg, _ := composite.AlgorithmByOID(oid)
		a.Detail = fmt.Sprintf("%s + %s, pre-hash %s, label %s, %d-byte signature",
			alg.MLDSA().Name(), alg.Traditional(), alg.PreHash(), alg.Label(), size)
	case FamilyHashMLDSA:
		a.Detail = "not accepted by meshca"
	default:
		a.Detail = fmt.Sprintf("%d-byte signature", size)
	}
	return a
}

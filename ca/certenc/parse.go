package certenc

import (
	"bytes"
	"encoding/asn1"
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/meshca/meshca/ca/internal/der"
	"github.com/meshca/meshca/ca/oid"
)

// This file is meshca's one parser of certificate DER: the encoder's
// self-checks ([Sign], [BuildCatalyst]) and the verifiers in ca/pqc split
// certificates and TBSCertificates with it, and derive the Catalyst
// preTBSCertificate with [PreTBS].

// ErrMalformedCertificate is returned when the DER structure of a
// certificate or TBSCertificate cannot be split into its fields.
var ErrMalformedCertificate = errors.New("certenc: malformed certificate")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformedCertificate, fmt.Sprintf(format, args...))
}

// The context-specific tags of TBSCertificate (RFC 5280 section 4.1).
var (
	tagVersion         = cbasn1.Tag(0).ContextSpecific().Constructed()
	tagIssuerUniqueID  = cbasn1.Tag(1).ContextSpecific()
	tagSubjectUniqueID = cbasn1.Tag(2).ContextSpecific()
	tagExtensions      = cbasn1.Tag(3).ContextSpecific().Constructed()
)

// Extension is one Extension of a TBSCertificate, as encoded.
type Extension struct {
	ID       asn1.ObjectIdentifier
	Critical bool
	Value    []byte // the content of extnValue
	Raw      []byte // the whole Extension element
}

// TBS is a DER TBSCertificate split into its raw elements, so that fields
// can be dropped or replaced without re-encoding the others.
type TBS struct {
	// Elements holds every element of the TBSCertificate SEQUENCE, in
	// order, as encoded.
	Elements [][]byte
	// SignatureIndex is the index of the signature AlgorithmIdentifier.
	SignatureIndex int
	// PublicKeyIndex is the index of subjectPublicKeyInfo.
	PublicKeyIndex int
	// ExtensionsIndex is the index of the [3] extensions; -1 when absent.
	ExtensionsIndex int
	// Extensions are the parsed extensions, in order.
	Extensions []Extension
}

// ParseTBS splits a DER TBSCertificate (RFC 5280 section 4.1). The version
// and unique identifiers are optional; duplicate extensions (section
// 4.2) and trailing data are errors.
func ParseTBS(tbs []byte) (*TBS, error) {
	s := cryptobyte.String(tbs)
	var body cryptobyte.String
	if !s.ReadASN1(&body, cbasn1.SEQUENCE) || !s.Empty() {
		return nil, malformed("TBSCertificate is not one DER SEQUENCE")
	}
	f := &TBS{ExtensionsIndex: -1}
	read := func(name string, tag cbasn1.Tag) error {
		var e cryptobyte.String
		if !body.ReadASN1Element(&e, tag) {
			return malformed("TBSCertificate %s", name)
		}
		f.Elements = append(f.Elements, e)
		return nil
	}
	optional := func(name string, tag cbasn1.Tag) error {
		if body.PeekASN1Tag(tag) {
			return read(name, tag)
		}
		return nil
	}
	if err := optional("version", tagVersion); err != nil {
		return nil, err
	}
	if err := read("serialNumber", cbasn1.INTEGER); err != nil {
		return nil, err
	}
	f.SignatureIndex = len(f.Elements)
	for _, name := range []string{"signature", "issuer", "validity", "subject", "subjectPublicKeyInfo"} {
		if err := read(name, cbasn1.SEQUENCE); err != nil {
			return nil, err
		}
	}
	f.PublicKeyIndex = len(f.Elements) - 1
	if err := optional("issuerUniqueID", tagIssuerUniqueID); err != nil {
		return nil, err
	}
	if err := optional("subjectUniqueID", tagSubjectUniqueID); err != nil {
		return nil, err
	}
	if body.PeekASN1Tag(tagExtensions) {
		f.ExtensionsIndex = len(f.Elements)
		if err := read("extensions", tagExtensions); err != nil {
			return nil, err
		}
		exts, err := ParseExtensions(f.Elements[f.ExtensionsIndex])
		if err != nil {
			return nil, err
		}
		f.Extensions = exts
	}
	if !body.Empty() {
		return nil, malformed("trailing data in TBSCertificate")
	}
	return f, nil
}

// ParseExtensions parses the [3] extensions element of a TBSCertificate
// (or of a preTBSCertificate). Duplicate extensions are an error.
func ParseExtensions(elem []byte) ([]Extension, error) {
	s := cryptobyte.String(elem)
	var wrapper, seq cryptobyte.String
	if !s.ReadASN1(&wrapper, tagExtensions) || !s.Empty() || !wrapper.ReadASN1(&seq, cbasn1.SEQUENCE) || !wrapper.Empty() {
		return nil, malformed("extensions")
	}
	var exts []Extension
	seen := map[string]bool{}
	for !seq.Empty() {
		var raw cryptobyte.String
		if !seq.ReadASN1Element(&raw, cbasn1.SEQUENCE) {
			return nil, malformed("extension")
		}
		ext, err := parseExtension(raw)
		if err != nil {
			return nil, err
		}
		if seen[ext.ID.String()] {
			return nil, malformed("duplicate extension %s", ext.ID)
		}
		seen[ext.ID.String()] = true
		exts = append(exts, ext)
	}
	return exts, nil
}

// parseExtension parses one DER Extension.
func parseExtension(raw []byte) (Extension, error) {
	e := cryptobyte.String(raw)
	ext := Extension{Raw: raw}
	var body, value cryptobyte.String
	if !e.ReadASN1(&body, cbasn1.SEQUENCE) || !e.Empty() || !body.ReadASN1ObjectIdentifier(&ext.ID) {
		return Extension{}, malformed("extension header")
	}
	if body.PeekASN1Tag(cbasn1.BOOLEAN) && !body.ReadASN1Boolean(&ext.Critical) {
		return Extension{}, malformed("extension %s critical flag", ext.ID)
	}
	if !body.ReadASN1(&value, cbasn1.OCTET_STRING) || !body.Empty() {
		return Extension{}, malformed("extension %s value", ext.ID)
	}
	ext.Value = value
	return ext, nil
}

// Extension returns the extension with the given OID, or nil.
func (f *TBS) Extension(oid asn1.ObjectIdentifier) *Extension {
	for i := range f.Extensions {
		if f.Extensions[i].ID.Equal(oid) {
			return &f.Extensions[i]
		}
	}
	return nil
}

// PreTBS returns the Catalyst preTBSCertificate of a DER TBSCertificate
// (ITU-T X.509 (10/2019) section 7.2.2): the TBSCertificate without its
// signature field and without the altSignatureValue (2.5.29.74)
// extension. Every other field, 2.5.29.72 and 2.5.29.73 included, is kept
// byte for byte.
//
// A TBS without altSignatureValue (one whose alternative signature is
// still to be computed) is accepted: only the signature field is dropped.
// If removing 2.5.29.74 leaves no extension, the extensions field is
// omitted, since X.509 forbids an empty one.
func PreTBS(tbs []byte) ([]byte, error) {
	f, err := ParseTBS(tbs)
	if err != nil {
		return nil, err
	}
	return f.preTBS()
}

func (f *TBS) preTBS() ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for i, e := range f.Elements {
			switch i {
			case f.SignatureIndex:
				continue
			case f.ExtensionsIndex:
				var kept [][]byte
				for _, ext := range f.Extensions {
					if !ext.ID.Equal(oid.AltSignatureValue) {
						kept = append(kept, ext.Raw)
					}
				}
				if len(kept) == 0 {
					continue
				}
				b.AddASN1(tagExtensions, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						for _, k := range kept {
							b.AddBytes(k)
						}
					})
				})
			default:
				b.AddBytes(e)
			}
		}
	})
	return b.Bytes()
}

// Certificate is a DER Certificate split into its three fields (RFC 5280
// section 4.1.1).
type Certificate struct {
	// RawTBS is the tbsCertificate element and TBS its fields.
	RawTBS []byte
	TBS    *TBS
	// SignatureAlgorithm is the signatureAlgorithm's OID; it must equal
	// the TBS's signature field (RFC 5280 section 4.1.1.2).
	SignatureAlgorithm asn1.ObjectIdentifier
	// SignatureParameters reports whether the AlgorithmIdentifier carries
	// parameters (even NULL).
	SignatureParameters bool
	// Signature is the content of the signatureValue BIT STRING.
	Signature []byte
}

// ParseCertificate splits a DER Certificate and its TBSCertificate.
func ParseCertificate(raw []byte) (*Certificate, error) {
	s := cryptobyte.String(raw)
	var body, rawTBS, sigAlg cryptobyte.String
	var sig asn1.BitString
	if !s.ReadASN1(&body, cbasn1.SEQUENCE) || !s.Empty() ||
		!body.ReadASN1Element(&rawTBS, cbasn1.SEQUENCE) ||
		!body.ReadASN1Element(&sigAlg, cbasn1.SEQUENCE) ||
		!body.ReadASN1BitString(&sig) || !body.Empty() {
		return nil, malformed("Certificate is not SEQUENCE{tbsCertificate, signatureAlgorithm, signature}")
	}
	if sig.BitLength%8 != 0 {
		return nil, malformed("signature BIT STRING has unused bits")
	}
	oid, params, err := der.ParseAlgorithmIdentifier(sigAlg)
	if err != nil {
		return nil, malformed("signatureAlgorithm: %v", err)
	}
	tbs, err := ParseTBS(rawTBS)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(tbs.Elements[tbs.SignatureIndex], sigAlg) {
		return nil, malformed("signatureAlgorithm differs from the TBSCertificate signature field (RFC 5280 section 4.1.1.2)")
	}
	return &Certificate{RawTBS: rawTBS, TBS: tbs, SignatureAlgorithm: oid, SignatureParameters: params, Signature: sig.Bytes}, nil
}

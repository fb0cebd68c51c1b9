package pqc

import (
	"bytes"
	"encoding/asn1"
	"errors"
	"fmt"

	"github.com/meshca/meshca/ca/pqc/internal/der"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// ErrMalformedCertificate is returned when the DER structure of a
// certificate or TBSCertificate cannot be split into its fields.
var ErrMalformedCertificate = errors.New("pqc: malformed certificate")

var (
	tagVersion         = cbasn1.Tag(0).ContextSpecific().Constructed()
	tagIssuerUniqueID  = cbasn1.Tag(1).ContextSpecific()
	tagSubjectUniqueID = cbasn1.Tag(2).ContextSpecific()
	tagExtensions      = cbasn1.Tag(3).ContextSpecific().Constructed()
)

// extension is one raw Extension of a TBSCertificate.
type extension struct {
	oid      asn1.ObjectIdentifier
	critical bool
	value    []byte // extnValue content
	raw      []byte // the whole Extension element
}

// tbsFields is a TBSCertificate split into its raw DER elements, so that
// fields can be dropped or replaced without re-encoding the others.
type tbsFields struct {
	elems     [][]byte // every element of the TBSCertificate SEQUENCE, in order
	sigAlgIdx int      // index of the `signature` AlgorithmIdentifier
	spkiIdx   int      // index of subjectPublicKeyInfo
	extIdx    int      // index of [3] extensions; -1 when absent
	exts      []extension
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformedCertificate, fmt.Sprintf(format, args...))
}

func parseTBS(tbs []byte) (*tbsFields, error) {
	s := cryptobyte.String(tbs)
	var body cryptobyte.String
	if !s.ReadASN1(&body, cbasn1.SEQUENCE) || !s.Empty() {
		return nil, malformed("TBSCertificate is not one DER SEQUENCE")
	}
	f := &tbsFields{extIdx: -1}
	read := func(name string, tag cbasn1.Tag) error {
		var e cryptobyte.String
		if !body.ReadASN1Element(&e, tag) {
			return malformed("TBSCertificate %s", name)
		}
		f.elems = append(f.elems, e)
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
	f.sigAlgIdx = len(f.elems)
	for _, name := range []string{"signature", "issuer", "validity", "subject", "subjectPublicKeyInfo"} {
		if err := read(name, cbasn1.SEQUENCE); err != nil {
			return nil, err
		}
	}
	f.spkiIdx = len(f.elems) - 1
	if err := optional("issuerUniqueID", tagIssuerUniqueID); err != nil {
		return nil, err
	}
	if err := optional("subjectUniqueID", tagSubjectUniqueID); err != nil {
		return nil, err
	}
	if body.PeekASN1Tag(tagExtensions) {
		f.extIdx = len(f.elems)
		if err := read("extensions", tagExtensions); err != nil {
			return nil, err
		}
		exts, err := parseExtensions(f.elems[f.extIdx])
		if err != nil {
			return nil, err
		}
		f.exts = exts
	}
	if !body.Empty() {
		return nil, malformed("trailing data in TBSCertificate")
	}
	return f, nil
}

func parseExtensions(elem []byte) ([]extension, error) {
	s := cryptobyte.String(elem)
	var wrapper, seq cryptobyte.String
	if !s.ReadASN1(&wrapper, tagExtensions) || !wrapper.ReadASN1(&seq, cbasn1.SEQUENCE) || !wrapper.Empty() {
		return nil, malformed("extensions")
	}
	var exts []extension
	seen := map[string]bool{}
	for !seq.Empty() {
		var raw, e cryptobyte.String
		if !seq.ReadASN1Element(&raw, cbasn1.SEQUENCE) {
			return nil, malformed("extension")
		}
		e = raw
		var body cryptobyte.String
		ext := extension{raw: raw}
		if !e.ReadASN1(&body, cbasn1.SEQUENCE) || !body.ReadASN1ObjectIdentifier(&ext.oid) {
			return nil, malformed("extension header")
		}
		if body.PeekASN1Tag(cbasn1.BOOLEAN) && !body.ReadASN1Boolean(&ext.critical) {
			return nil, malformed("extension %s critical flag", ext.oid)
		}
		var value cryptobyte.String
		if !body.ReadASN1(&value, cbasn1.OCTET_STRING) || !body.Empty() {
			return nil, malformed("extension %s value", ext.oid)
		}
		ext.value = value
		if seen[ext.oid.String()] {
			return nil, malformed("duplicate extension %s", ext.oid)
		}
		seen[ext.oid.String()] = true
		exts = append(exts, ext)
	}
	return exts, nil
}

func (f *tbsFields) extension(oid asn1.ObjectIdentifier) *extension {
	for i := range f.exts {
		if f.exts[i].oid.Equal(oid) {
			return &f.exts[i]
		}
	}
	return nil
}

// PreTBS returns the Catalyst preTBSCertificate of a DER TBSCertificate:
// the same TBSCertificate without its `signature` AlgorithmIdentifier
// field and without the 2.5.29.74 altSignatureValue extension. Every other
// field, including 2.5.29.72 and 2.5.29.73, is kept byte for byte.
//
// A TBS that has no altSignatureValue yet (an encoder computing the
// alternative signature) is accepted: only the signature field is
// dropped. If removing 2.5.29.74 leaves no extension, the extensions field
// is omitted, since X.509 forbids an empty one.
func PreTBS(tbs []byte) ([]byte, error) {
	f, err := parseTBS(tbs)
	if err != nil {
		return nil, err
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for i, e := range f.elems {
			switch i {
			case f.sigAlgIdx:
				continue
			case f.extIdx:
				var kept [][]byte
				for _, ext := range f.exts {
					if !ext.oid.Equal(OIDAltSignatureValue) {
						kept = append(kept, ext.raw)
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

// certFields is the outer structure of a DER Certificate.
type certFields struct {
	rawTBS    []byte
	sigAlg    asn1.ObjectIdentifier
	sigParams bool
	signature []byte
	tbs       *tbsFields
}

func parseCertificate(raw []byte) (*certFields, error) {
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
	tbs, err := parseTBS(rawTBS)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(tbs.elems[tbs.sigAlgIdx], sigAlg) {
		return nil, malformed("signatureAlgorithm differs from the TBSCertificate signature field (RFC 5280 §4.1.1.2)")
	}
	return &certFields{rawTBS: rawTBS, sigAlg: oid, sigParams: params, signature: sig.Bytes, tbs: tbs}, nil
}

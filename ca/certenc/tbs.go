package certenc

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// BuildTBS encodes t as a DER TBSCertificate whose signature field is
// sigAlg. Use it with [Sign] for a two-step build; [Build] does both.
func BuildTBS(t *Template, sigAlg pkix.AlgorithmIdentifier) ([]byte, error) {
	p, err := t.encode()
	if err != nil {
		return nil, err
	}
	alg, err := marshalAlgorithm(sigAlg)
	if err != nil {
		return nil, err
	}
	if err := checkRequested(t, alg); err != nil {
		return nil, err
	}
	return p.tbs(alg, p.exts)
}

// tbs assembles a TBSCertificate from p with the given extensions. A nil
// sigAlg leaves the signature field out, which yields the Catalyst
// preTBSCertificate.
func (p *parts) tbs(sigAlg []byte, exts []pkix.Extension) ([]byte, error) {
	if err := checkDuplicates(exts); err != nil {
		return nil, err
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1Int64(2) // v3
		})
		b.AddASN1BigInt(p.serial)
		if sigAlg != nil {
			b.AddBytes(sigAlg)
		}
		b.AddBytes(p.issuer)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			addTime(b, p.notBefore)
			addTime(b, p.notAfter)
		})
		b.AddBytes(p.subject)
		b.AddBytes(p.spki)
		if len(exts) > 0 {
			b.AddASN1(cbasn1.Tag(3).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					for _, e := range exts {
						addExtension(b, e)
					}
				})
			})
		}
	})
	der, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("certenc: encode TBSCertificate: %w", err)
	}
	return der, nil
}

// addTime writes t as RFC 5280 4.1.2.5 requires: UTCTime through 2049,
// GeneralizedTime from 2050, whole seconds, always in UTC ("Z").
func addTime(b *cryptobyte.Builder, t time.Time) {
	t = t.UTC()
	switch y := t.Year(); {
	case y < 0 || y > 9999:
		b.SetError(fmt.Errorf("year %d cannot be encoded", y))
	case y >= 1950 && y < 2050:
		b.AddASN1UTCTime(t)
	default:
		b.AddASN1GeneralizedTime(t)
	}
}

func addExtension(b *cryptobyte.Builder, e pkix.Extension) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(e.Id)
		if e.Critical {
			b.AddASN1Boolean(true) // DEFAULT FALSE is omitted in DER
		}
		b.AddASN1OctetString(e.Value)
	})
}

func checkDuplicates(exts []pkix.Extension) error {
	seen := make(map[string]bool, len(exts))
	for _, e := range exts {
		k := e.Id.String()
		if seen[k] {
			return fmt.Errorf("certenc: extension %s appears twice", k)
		}
		seen[k] = true
	}
	return nil
}

func marshalAlgorithm(ai pkix.AlgorithmIdentifier) ([]byte, error) {
	if len(ai.Algorithm) == 0 {
		return nil, errors.New("certenc: empty signature AlgorithmIdentifier")
	}
	der, err := asn1.Marshal(ai)
	if err != nil {
		return nil, fmt.Errorf("certenc: encode AlgorithmIdentifier: %w", err)
	}
	return der, nil
}

// marshalCertificate assembles Certificate ::= SEQUENCE { tbsCertificate,
// signatureAlgorithm, signatureValue BIT STRING }.
func marshalCertificate(tbs, sigAlg, sig []byte) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbs)
		b.AddBytes(sigAlg)
		addBitString(b, sig)
	})
	der, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("certenc: encode Certificate: %w", err)
	}
	return der, nil
}

func addBitString(b *cryptobyte.Builder, octets []byte) {
	b.AddASN1(cbasn1.BIT_STRING, func(b *cryptobyte.Builder) {
		b.AddUint8(0) // no unused bits
		b.AddBytes(octets)
	})
}

// tbsFields is a TBSCertificate split into its DER elements.
type tbsFields struct {
	head   []byte // version and serialNumber, as encoded
	sigAlg []byte // the signature AlgorithmIdentifier
	rest   []byte // issuer, validity, subject, subjectPublicKeyInfo, unique IDs
	exts   [][]byte
}

// parseTBS splits a DER TBSCertificate without interpreting its fields
// beyond what preTBS and Sign need.
func parseTBS(tbs []byte) (*tbsFields, error) {
	in := cryptobyte.String(tbs)
	var body cryptobyte.String
	if !in.ReadASN1(&body, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, errors.New("certenc: TBSCertificate is not one DER SEQUENCE")
	}
	start := []byte(body)
	var f tbsFields
	var elem cryptobyte.String
	var tag cbasn1.Tag
	// version [0] (required: certenc only deals in v3) and serialNumber.
	if !body.ReadASN1(&elem, cbasn1.Tag(0).Constructed().ContextSpecific()) ||
		!body.ReadASN1(&elem, cbasn1.INTEGER) {
		return nil, errors.New("certenc: malformed TBSCertificate version or serial")
	}
	f.head = start[:len(start)-len(body)]
	start = body
	if !body.ReadASN1(&elem, cbasn1.SEQUENCE) {
		return nil, errors.New("certenc: malformed TBSCertificate signature")
	}
	f.sigAlg = start[:len(start)-len(body)]
	start = body
	for !body.Empty() && !body.PeekASN1Tag(cbasn1.Tag(3).Constructed().ContextSpecific()) {
		if !body.ReadAnyASN1Element(&elem, &tag) {
			return nil, errors.New("certenc: malformed TBSCertificate")
		}
	}
	f.rest = start[:len(start)-len(body)]
	if body.Empty() {
		return &f, nil
	}
	var wrap, list cryptobyte.String
	if !body.ReadASN1(&wrap, cbasn1.Tag(3).Constructed().ContextSpecific()) || !body.Empty() ||
		!wrap.ReadASN1(&list, cbasn1.SEQUENCE) || !wrap.Empty() {
		return nil, errors.New("certenc: malformed TBSCertificate extensions")
	}
	for !list.Empty() {
		var ext cryptobyte.String
		if !list.ReadASN1Element(&ext, cbasn1.SEQUENCE) {
			return nil, errors.New("certenc: malformed extension")
		}
		f.exts = append(f.exts, ext)
	}
	return &f, nil
}

// extensionOID reads the extnID of one DER Extension.
func extensionOID(ext []byte) (asn1.ObjectIdentifier, error) {
	s := cryptobyte.String(ext)
	var body cryptobyte.String
	var oid asn1.ObjectIdentifier
	if !s.ReadASN1(&body, cbasn1.SEQUENCE) || !body.ReadASN1ObjectIdentifier(&oid) {
		return nil, errors.New("certenc: malformed extension")
	}
	return oid, nil
}

// preTBS returns the Catalyst preTBSCertificate of a DER TBSCertificate
// (ITU-T X.509 (10/2019) 7.2.2): the TBSCertificate without its signature
// field and without the altSignatureValue (2.5.29.74) extension. All other
// bytes are kept as they are. It fails when tbs has no altSignatureValue.
//
// BuildCatalyst assembles the preTBS directly from the template; preTBS
// re-derives it from the finished TBS as a self-check, the way verifiers
// will. ca/pqc exports the verifier-side PreTBS (which also accepts a TBS
// without 2.5.29.74); this one stays internal.
func preTBS(tbs []byte) ([]byte, error) {
	f, err := parseTBS(tbs)
	if err != nil {
		return nil, err
	}
	var kept [][]byte
	found := false
	for _, e := range f.exts {
		oid, err := extensionOID(e)
		if err != nil {
			return nil, err
		}
		if oid.Equal(OIDAltSignatureValue) {
			if found {
				return nil, errors.New("certenc: altSignatureValue appears twice")
			}
			found = true
			continue
		}
		kept = append(kept, e)
	}
	if !found {
		return nil, errors.New("certenc: TBSCertificate has no altSignatureValue extension")
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(f.head)
		b.AddBytes(f.rest)
		if len(kept) > 0 {
			b.AddASN1(cbasn1.Tag(3).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					for _, e := range kept {
						b.AddBytes(e)
					}
				})
			})
		}
	})
	return b.Bytes()
}

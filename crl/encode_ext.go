package crl

import (
	"encoding/asn1"
	"fmt"
	"net/url"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/meshca/meshca/ca/oid"
)

// extension is one Extension (RFC 5280 section 4.1) with its DER
// extnValue contents.
type extension struct {
	id       asn1.ObjectIdentifier
	critical bool
	value    []byte
}

// crlExtensions encodes the crlExtensions of p, in this order:
// authorityKeyIdentifier, cRLNumber, then deltaCRLIndicator (critical,
// delta CRLs) or freshestCRL (full CRLs that name their delta CRLs).
func crlExtensions(p *Params) ([]extension, error) {
	aki, err := build(func(b *cryptobyte.Builder) {
		// AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] IMPLICIT KeyIdentifier OPTIONAL, ... }
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(p.Issuer.SubjectKeyId) })
		})
	})
	if err != nil {
		return nil, err
	}
	number, err := build(func(b *cryptobyte.Builder) { b.AddASN1Uint64(p.Number) })
	if err != nil {
		return nil, err
	}
	exts := []extension{{id: oid.AuthorityKeyID, value: aki}, {id: oid.CRLNumber, value: number}}
	if p.BaseNumber != 0 {
		base, err := build(func(b *cryptobyte.Builder) { b.AddASN1Uint64(p.BaseNumber) })
		if err != nil {
			return nil, err
		}
		// "This extension MUST be marked as critical" (5.2.4).
		exts = append(exts, extension{id: oid.DeltaCRLIndicator, critical: true, value: base})
	}
	if len(p.FreshestCRL) > 0 {
		fresh, err := freshestCRL(p.FreshestCRL)
		if err != nil {
			return nil, err
		}
		// "The extension MUST be marked as non-critical" (5.2.6).
		exts = append(exts, extension{id: oid.FreshestCRL, value: fresh})
	}
	return exts, nil
}

// freshestCRL encodes FreshestCRL ::= CRLDistributionPoints (RFC 5280
// section 4.2.1.13) as one DistributionPoint whose fullName lists the
// URIs: every URI names the same delta CRL.
func freshestCRL(uris []string) ([]byte, error) {
	for _, u := range uris {
		if err := checkURI(u); err != nil {
			return nil, err
		}
	}
	return build(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // CRLDistributionPoints
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // DistributionPoint
				b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) { // distributionPoint
					b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) { // fullName
						for _, u := range uris {
							b.AddASN1(cbasn1.Tag(6).ContextSpecific(), func(b *cryptobyte.Builder) { // uniformResourceIdentifier
								b.AddBytes([]byte(u))
							})
						}
					})
				})
			})
		})
	})
}

// checkURI accepts an absolute URI that fits an IA5String (RFC 5280
// section 4.2.1.6).
func checkURI(u string) error {
	for i := 0; i < len(u); i++ {
		if u[i] <= 0x20 || u[i] >= 0x7f {
			return fmt.Errorf("crl: FreshestCRL URI %q: only printable ASCII without spaces is allowed (IA5String)", u)
		}
	}
	parsed, err := url.Parse(u)
	if err != nil || parsed.Scheme == "" || parsed.Host == "" {
		return fmt.Errorf("crl: FreshestCRL URI %q is not an absolute URI with a host", u)
	}
	return nil
}

// altSignatureValue encodes the contents of the altSignatureValue
// extension (ITU-T X.509 clause 9.8): a BIT STRING of whole octets.
func altSignatureValue(sig []byte) extension {
	v := make([]byte, 0, headerLen(len(sig)+1)+len(sig)+1)
	v = appendHeader(v, tagBitString, len(sig)+1)
	v = append(v, 0)
	v = append(v, sig...)
	return extension{id: oid.AltSignatureValue, value: v}
}

// marshalExtensions encodes crlExtensions [0] EXPLICIT Extensions
// (RFC 5280 section 5.1).
func marshalExtensions(exts []extension) ([]byte, error) {
	return build(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				for _, e := range exts {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1ObjectIdentifier(e.id)
						if e.critical {
							b.AddASN1Boolean(true) // DEFAULT FALSE is omitted in DER
						}
						b.AddASN1OctetString(e.value)
					})
				}
			})
		})
	})
}

func build(f func(*cryptobyte.Builder)) ([]byte, error) {
	b := cryptobyte.NewBuilder(nil)
	f(b)
	der, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("crl: encode: %w", err)
	}
	return der, nil
}

package certenc

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/meshca/meshca/ca/oid"
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
	b := cryptobyte.NewBuilder(make([]byte, 0, p.tbsSizeHint(exts)))
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

// tbsSizeHint is a little more than the size of the TBSCertificate, so
// that the builder allocates its buffer once.
func (p *parts) tbsSizeHint(exts []pkix.Extension) int {
	n := 64 + len(p.issuer) + len(p.subject) + len(p.spki) + 2*20 /* times */ + 32 /* serial, version, algorithm */
	for _, e := range exts {
		n += 8 + len(e.Id)*2 + len(e.Value)
	}
	return n
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
	// A certificate has a handful of extensions: comparing pairs is
	// cheaper than a map of OID strings.
	for i, e := range exts {
		for _, o := range exts[:i] {
			if e.Id.Equal(o.Id) {
				return fmt.Errorf("certenc: extension %s appears twice", e.Id)
			}
		}
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
	b := cryptobyte.NewBuilder(make([]byte, 0, len(tbs)+len(sigAlg)+len(sig)+16))
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

// preTBS is [PreTBS] for a TBS that must carry altSignatureValue: the
// encoder's self-check that what was alt-signed is what verifiers will
// recompute.
func preTBS(tbs []byte) ([]byte, error) {
	f, err := ParseTBS(tbs)
	if err != nil {
		return nil, err
	}
	if f.Extension(oid.AltSignatureValue) == nil {
		return nil, errors.New("certenc: TBSCertificate has no altSignatureValue extension")
	}
	return f.preTBS()
}

package certenc

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"time"
	"unicode"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/meshca/meshca/ca/internal/der"
	"github.com/meshca/meshca/ca/oid"
)

// Template is the input of the encoder: the certificate fields, the
// subject key as DER (so any algorithm works) and the issuer's name.
type Template struct {
	// Certificate supplies the certificate fields, read the way
	// x509.CreateCertificate reads them. The supported subset is:
	// SerialNumber, RawSubject/Subject, NotBefore, NotAfter, KeyUsage,
	// ExtKeyUsage, UnknownExtKeyUsage, BasicConstraintsValid, IsCA,
	// MaxPathLen, MaxPathLenZero, SubjectKeyId, AuthorityKeyId, OCSPServer,
	// IssuingCertificateURL, DNSNames, EmailAddresses, IPAddresses, URIs,
	// CRLDistributionPoints and ExtraExtensions. Other fields that would
	// change the encoding (Policies, PolicyIdentifiers, name constraints)
	// are rejected rather than dropped: pass them as ExtraExtensions.
	//
	// Unlike x509.CreateCertificate, nothing is derived: SubjectKeyId and
	// AuthorityKeyId are written only when set (see [SubjectKeyID]), and
	// SerialNumber is required.
	Certificate *x509.Certificate

	// PublicKey is the subject's SubjectPublicKeyInfo in DER, of any
	// algorithm (classical, ML-DSA, composite, ML-KEM). When empty,
	// Certificate.PublicKey is marshalled with x509.MarshalPKIXPublicKey.
	PublicKey []byte

	// Issuer is the issuer's Name in DER: the issuer certificate's
	// RawSubject. When empty the certificate is self-issued and the
	// subject's name is used.
	Issuer []byte
}

// emptyName is the DER of an empty Name (an empty SEQUENCE).
var emptyName = []byte{0x30, 0x00}

// maxSerialBits keeps the encoded serial within RFC 5280's 20 octets.
const maxSerialBits = 159

// parts is a Template validated and encoded into the pieces that make up
// a TBSCertificate. Building the TBS (and the preTBS) from parts never
// re-encodes the template, which is what makes Catalyst single-pass.
type parts struct {
	serial              *big.Int
	issuer, subject     []byte
	notBefore, notAfter time.Time
	spki                []byte
	exts                []pkix.Extension
}

func (t *Template) encode() (*parts, error) {
	if t == nil || t.Certificate == nil {
		return nil, errors.New("certenc: template has no Certificate")
	}
	c := t.Certificate
	if err := checkUnsupported(c); err != nil {
		return nil, err
	}
	p := &parts{serial: c.SerialNumber, notBefore: c.NotBefore, notAfter: c.NotAfter}
	switch {
	case p.serial == nil:
		return nil, errors.New("certenc: SerialNumber is required")
	case p.serial.Sign() <= 0:
		return nil, errors.New("certenc: SerialNumber must be positive")
	case p.serial.BitLen() > maxSerialBits:
		return nil, fmt.Errorf("certenc: SerialNumber has %d bits, more than the %d that fit 20 octets", p.serial.BitLen(), maxSerialBits)
	}
	if p.notAfter.Before(p.notBefore) {
		return nil, fmt.Errorf("certenc: NotAfter %v is before NotBefore %v", p.notAfter, p.notBefore)
	}
	if c.BasicConstraintsValid && c.MaxPathLen < -1 {
		return nil, errors.New("certenc: MaxPathLen must be -1 or more")
	}
	if c.BasicConstraintsValid && !c.IsCA && c.MaxPathLen != -1 && (c.MaxPathLen != 0 || c.MaxPathLenZero) {
		return nil, errors.New("certenc: only CAs may set MaxPathLen")
	}

	var err error
	if p.subject, err = subjectName(c); err != nil {
		return nil, err
	}
	p.issuer = t.Issuer
	if len(p.issuer) == 0 {
		p.issuer = p.subject
	} else if err := checkName(p.issuer); err != nil {
		return nil, fmt.Errorf("certenc: issuer name: %w", err)
	}
	if p.spki, err = t.subjectPublicKeyInfo(); err != nil {
		return nil, err
	}
	if p.exts, err = buildExtensions(c, bytes.Equal(p.subject, emptyName)); err != nil {
		return nil, err
	}
	return p, nil
}

func checkUnsupported(c *x509.Certificate) error {
	switch {
	case len(c.Policies) > 0 || len(c.PolicyIdentifiers) > 0:
		return errors.New("certenc: certificate policies are not supported; pass them as ExtraExtensions")
	case len(c.PermittedDNSDomains) > 0 || len(c.ExcludedDNSDomains) > 0 ||
		len(c.PermittedIPRanges) > 0 || len(c.ExcludedIPRanges) > 0 ||
		len(c.PermittedEmailAddresses) > 0 || len(c.ExcludedEmailAddresses) > 0 ||
		len(c.PermittedURIDomains) > 0 || len(c.ExcludedURIDomains) > 0:
		return errors.New("certenc: name constraints are not supported; pass them as ExtraExtensions")
	}
	return nil
}

func subjectName(c *x509.Certificate) ([]byte, error) {
	if len(c.RawSubject) > 0 {
		if err := checkName(c.RawSubject); err != nil {
			return nil, fmt.Errorf("certenc: RawSubject: %w", err)
		}
		return c.RawSubject, nil
	}
	der, err := asn1.Marshal(c.Subject.ToRDNSequence())
	if err != nil {
		return nil, fmt.Errorf("certenc: encode subject: %w", err)
	}
	return der, nil
}

// checkName checks that der is exactly one SEQUENCE (a Name).
func checkName(der []byte) error {
	s := cryptobyte.String(der)
	var name cryptobyte.String
	if !s.ReadASN1(&name, cbasn1.SEQUENCE) || !s.Empty() {
		return errors.New("not a DER Name")
	}
	return nil
}

func (t *Template) subjectPublicKeyInfo() ([]byte, error) {
	spki := t.PublicKey
	if len(spki) == 0 {
		if t.Certificate.PublicKey == nil {
			return nil, errors.New("certenc: template has no subject public key")
		}
		var err error
		if spki, err = x509.MarshalPKIXPublicKey(t.Certificate.PublicKey); err != nil {
			return nil, fmt.Errorf("certenc: encode subject public key: %w", err)
		}
	}
	if _, err := spkiKeyBits(spki); err != nil {
		return nil, fmt.Errorf("certenc: subject public key: %w", err)
	}
	return spki, nil
}

// spkiKeyBits checks that spki is one DER SubjectPublicKeyInfo and returns
// the content of its subjectPublicKey BIT STRING (without the unused-bits
// octet).
func spkiKeyBits(spki []byte) ([]byte, error) {
	info, err := der.ParsePublicKeyInfo(spki)
	if err != nil {
		return nil, err
	}
	return info.PublicKey, nil
}

// buildExtensions mirrors crypto/x509's buildCertExtensions (Go 1.26) for
// the supported subset: same order, same encodings, ExtraExtensions last
// and overriding a built-in extension with the same OID. The extensions of
// every workload leaf are encoded with cryptobyte (no reflection); the
// parity tests hold the bytes to crypto/x509's.
func buildExtensions(c *x509.Certificate, subjectIsEmpty bool) ([]pkix.Extension, error) {
	exts := make([]pkix.Extension, 0, 6+len(c.ExtraExtensions))
	add := func(oid asn1.ObjectIdentifier, critical bool, v any) error {
		der, err := asn1.Marshal(v)
		if err != nil {
			return fmt.Errorf("certenc: encode extension %v: %w", oid, err)
		}
		exts = append(exts, pkix.Extension{Id: oid, Critical: critical, Value: der})
		return nil
	}
	build := func(oid asn1.ObjectIdentifier, critical bool, f func(*cryptobyte.Builder)) error {
		b := cryptobyte.NewBuilder(make([]byte, 0, 64))
		f(b)
		der, err := b.Bytes()
		if err != nil {
			return fmt.Errorf("certenc: encode extension %v: %w", oid, err)
		}
		exts = append(exts, pkix.Extension{Id: oid, Critical: critical, Value: der})
		return nil
	}
	wanted := func(cond bool, oid asn1.ObjectIdentifier) bool {
		return cond && !hasExtension(c.ExtraExtensions, oid)
	}

	if wanted(c.KeyUsage != 0, oid.KeyUsage) {
		ku := keyUsageBits(c.KeyUsage)
		if err := build(oid.KeyUsage, true, func(b *cryptobyte.Builder) {
			addBitStringBits(b, ku)
		}); err != nil {
			return nil, err
		}
	}
	if wanted(len(c.ExtKeyUsage) > 0 || len(c.UnknownExtKeyUsage) > 0, oid.ExtKeyUsage) {
		oids, err := extKeyUsageOIDs(c.ExtKeyUsage, c.UnknownExtKeyUsage)
		if err != nil {
			return nil, err
		}
		if err := build(oid.ExtKeyUsage, false, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				for _, oid := range oids {
					b.AddASN1ObjectIdentifier(oid)
				}
			})
		}); err != nil {
			return nil, err
		}
	}
	if wanted(c.BasicConstraintsValid, oid.BasicConstraints) {
		pathLen := c.MaxPathLen
		if pathLen == 0 && !c.MaxPathLenZero {
			pathLen = -1 // omitted
		}
		// BasicConstraints ::= SEQUENCE { cA BOOLEAN DEFAULT FALSE,
		// pathLenConstraint INTEGER OPTIONAL } (RFC 5280 4.2.1.9); DER
		// omits a DEFAULT value.
		if err := build(oid.BasicConstraints, true, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				if c.IsCA {
					b.AddASN1Boolean(true)
				}
				if pathLen != -1 {
					b.AddASN1Int64(int64(pathLen))
				}
			})
		}); err != nil {
			return nil, err
		}
	}
	if wanted(len(c.SubjectKeyId) > 0, oid.SubjectKeyID) {
		if err := build(oid.SubjectKeyID, false, func(b *cryptobyte.Builder) {
			b.AddASN1OctetString(c.SubjectKeyId)
		}); err != nil {
			return nil, err
		}
	}
	if wanted(len(c.AuthorityKeyId) > 0, oid.AuthorityKeyID) {
		// AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] IMPLICIT
		// OCTET STRING OPTIONAL, ... } (RFC 5280 4.2.1.1).
		if err := build(oid.AuthorityKeyID, false, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) {
					b.AddBytes(c.AuthorityKeyId)
				})
			})
		}); err != nil {
			return nil, err
		}
	}
	if wanted(len(c.OCSPServer) > 0 || len(c.IssuingCertificateURL) > 0, oid.AuthorityInfoAccess) {
		var aia []accessDescription
		for _, u := range c.OCSPServer {
			aia = append(aia, accessDescription{oid.AccessOCSP, uriName(u)})
		}
		for _, u := range c.IssuingCertificateURL {
			aia = append(aia, accessDescription{oid.AccessCAIssuers, uriName(u)})
		}
		if err := add(oid.AuthorityInfoAccess, false, aia); err != nil {
			return nil, err
		}
	}
	if wanted(len(c.DNSNames) > 0 || len(c.EmailAddresses) > 0 || len(c.IPAddresses) > 0 || len(c.URIs) > 0, oid.SubjectAltName) {
		sans, err := generalNames(c)
		if err != nil {
			return nil, err
		}
		// RFC 5280 4.2.1.6: with an empty subject the SAN is critical.
		// GeneralNames ::= SEQUENCE OF GeneralName, each an IMPLICIT
		// context-specific primitive here.
		if err := build(oid.SubjectAltName, subjectIsEmpty, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				for _, n := range sans {
					b.AddASN1(cbasn1.Tag(n.Tag).ContextSpecific(), func(b *cryptobyte.Builder) {
						b.AddBytes(n.Bytes)
					})
				}
			})
		}); err != nil {
			return nil, err
		}
	}
	if wanted(len(c.CRLDistributionPoints) > 0, oid.CRLDistributionPoints) {
		var dps []distributionPoint
		for _, u := range c.CRLDistributionPoints {
			dps = append(dps, distributionPoint{DistributionPoint: distributionPointName{FullName: []asn1.RawValue{uriName(u)}}})
		}
		if err := add(oid.CRLDistributionPoints, false, dps); err != nil {
			return nil, err
		}
	}
	return append(exts, c.ExtraExtensions...), nil
}

// addBitStringBits writes bs as a DER BIT STRING: the unused-bits octet,
// then the bytes (X.690 8.6.2), as encoding/asn1 does.
func addBitStringBits(b *cryptobyte.Builder, bs asn1.BitString) {
	b.AddASN1(cbasn1.BIT_STRING, func(b *cryptobyte.Builder) {
		b.AddUint8(byte((8 - bs.BitLength%8) % 8))
		b.AddBytes(bs.Bytes)
	})
}

func hasExtension(exts []pkix.Extension, oid asn1.ObjectIdentifier) bool {
	for _, e := range exts {
		if e.Id.Equal(oid) {
			return true
		}
	}
	return false
}

type accessDescription struct {
	Method   asn1.ObjectIdentifier
	Location asn1.RawValue
}

type distributionPoint struct {
	DistributionPoint distributionPointName `asn1:"optional,tag:0"`
}

type distributionPointName struct {
	FullName []asn1.RawValue `asn1:"optional,tag:0"`
}

// GeneralName tags (RFC 5280 4.2.1.6).
const (
	nameTagEmail = 1
	nameTagDNS   = 2
	nameTagURI   = 6
	nameTagIP    = 7
)

func uriName(u string) asn1.RawValue {
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: nameTagURI, Bytes: []byte(u)}
}

// generalNames encodes the SANs in crypto/x509's order: DNS, email, IP, URI.
func generalNames(c *x509.Certificate) ([]asn1.RawValue, error) {
	var names []asn1.RawValue
	ia5 := func(tag int, s string) error {
		for _, r := range s {
			if r > unicode.MaxASCII {
				return fmt.Errorf("certenc: SAN %q is not an IA5String", s)
			}
		}
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: tag, Bytes: []byte(s)})
		return nil
	}
	for _, n := range c.DNSNames {
		if err := ia5(nameTagDNS, n); err != nil {
			return nil, err
		}
	}
	for _, n := range c.EmailAddresses {
		if err := ia5(nameTagEmail, n); err != nil {
			return nil, err
		}
	}
	for _, ip := range c.IPAddresses {
		b := ip.To4()
		if b == nil {
			b = ip
		}
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: nameTagIP, Bytes: b})
	}
	for _, u := range c.URIs {
		if err := ia5(nameTagURI, u.String()); err != nil {
			return nil, err
		}
	}
	return names, nil
}

// keyUsageBits encodes a KeyUsage as the minimal DER BIT STRING.
func keyUsageBits(ku x509.KeyUsage) asn1.BitString {
	a := []byte{reverseBits(byte(ku)), reverseBits(byte(ku >> 8))}
	if a[1] == 0 {
		a = a[:1]
	}
	bitLen := len(a) * 8
	for i := len(a) - 1; i >= 0; i-- {
		if a[i] != 0 {
			for b := a[i]; b&1 == 0; b >>= 1 {
				bitLen--
			}
			break
		}
		bitLen -= 8
	}
	return asn1.BitString{Bytes: a, BitLength: bitLen}
}

func reverseBits(in byte) byte {
	var out byte
	for i := 0; i < 8; i++ {
		out = out<<1 | in&1
		in >>= 1
	}
	return out
}

var extKeyUsages = map[x509.ExtKeyUsage]asn1.ObjectIdentifier{
	x509.ExtKeyUsageAny:                            {2, 5, 29, 37, 0},
	x509.ExtKeyUsageServerAuth:                     {1, 3, 6, 1, 5, 5, 7, 3, 1},
	x509.ExtKeyUsageClientAuth:                     {1, 3, 6, 1, 5, 5, 7, 3, 2},
	x509.ExtKeyUsageCodeSigning:                    {1, 3, 6, 1, 5, 5, 7, 3, 3},
	x509.ExtKeyUsageEmailProtection:                {1, 3, 6, 1, 5, 5, 7, 3, 4},
	x509.ExtKeyUsageIPSECEndSystem:                 {1, 3, 6, 1, 5, 5, 7, 3, 5},
	x509.ExtKeyUsageIPSECTunnel:                    {1, 3, 6, 1, 5, 5, 7, 3, 6},
	x509.ExtKeyUsageIPSECUser:                      {1, 3, 6, 1, 5, 5, 7, 3, 7},
	x509.ExtKeyUsageTimeStamping:                   {1, 3, 6, 1, 5, 5, 7, 3, 8},
	x509.ExtKeyUsageOCSPSigning:                    {1, 3, 6, 1, 5, 5, 7, 3, 9},
	x509.ExtKeyUsageMicrosoftServerGatedCrypto:     {1, 3, 6, 1, 4, 1, 311, 10, 3, 3},
	x509.ExtKeyUsageNetscapeServerGatedCrypto:      {2, 16, 840, 1, 113730, 4, 1},
	x509.ExtKeyUsageMicrosoftCommercialCodeSigning: {1, 3, 6, 1, 4, 1, 311, 2, 1, 22},
	x509.ExtKeyUsageMicrosoftKernelCodeSigning:     {1, 3, 6, 1, 4, 1, 311, 61, 1, 1},
}

func extKeyUsageOIDs(known []x509.ExtKeyUsage, unknown []asn1.ObjectIdentifier) ([]asn1.ObjectIdentifier, error) {
	oids := make([]asn1.ObjectIdentifier, 0, len(known)+len(unknown))
	for _, u := range known {
		oid, ok := extKeyUsages[u]
		if !ok {
			return nil, fmt.Errorf("certenc: unknown extended key usage %d", u)
		}
		oids = append(oids, oid)
	}
	return append(oids, unknown...), nil
}

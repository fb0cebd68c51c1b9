package mldsa

import (
	"crypto/subtle"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/meshca/meshca/ca/internal/der"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

var (
	// ErrNotMLDSA is returned when a key's AlgorithmIdentifier is not one
	// of the three pure ML-DSA OIDs.
	ErrNotMLDSA = errors.New("mldsa: not a pure ML-DSA key")
	// ErrHashMLDSA is returned for the HashML-DSA OIDs
	// (2.16.840.1.101.3.4.3.32-34), which meshca does not accept.
	ErrHashMLDSA = errors.New("mldsa: HashML-DSA is not supported; meshca uses pure ML-DSA only")
	// ErrParametersPresent is returned when the AlgorithmIdentifier carries
	// parameters; RFC 9881 requires them to be absent.
	ErrParametersPresent = errors.New("mldsa: AlgorithmIdentifier parameters must be absent")
	// ErrPublicKeyMismatch is returned when a PKCS#8 v2 publicKey does not
	// match the private key.
	ErrPublicKeyMismatch = errors.New("mldsa: PKCS#8 publicKey does not match the private key")
)

// IsHashMLDSAOID reports whether oid is one of the HashML-DSA OIDs
// (id-hash-ml-dsa-44/65/87-with-sha512).
func IsHashMLDSAOID(oid asn1.ObjectIdentifier) bool {
	prefix := asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 3}
	return len(oid) == 9 && oid[:8].Equal(prefix) && oid[8] >= 32 && oid[8] <= 34
}

func parameterSetFor(oid asn1.ObjectIdentifier, hasParams bool) (*ParameterSet, error) {
	p, ok := ParameterSetByOID(oid)
	if !ok {
		if IsHashMLDSAOID(oid) {
			return nil, fmt.Errorf("%w (OID %s)", ErrHashMLDSA, oid)
		}
		return nil, fmt.Errorf("%w (OID %s)", ErrNotMLDSA, oid)
	}
	if hasParams {
		return nil, fmt.Errorf("%w (%s)", ErrParametersPresent, p.name)
	}
	return p, nil
}

// MarshalPKIXPublicKey returns the DER SubjectPublicKeyInfo of pk: the
// RFC 9881 OID with absent parameters and the raw key in the BIT STRING.
func MarshalPKIXPublicKey(pk *PublicKey) ([]byte, error) {
	return der.MarshalPublicKeyInfo(pk.params.oid, pk.raw)
}

// ParsePKIXPublicKey parses a DER SubjectPublicKeyInfo holding an ML-DSA
// public key.
func ParsePKIXPublicKey(spki []byte) (*PublicKey, error) {
	info, err := der.ParsePublicKeyInfo(spki)
	if err != nil {
		return nil, fmt.Errorf("mldsa: %w", err)
	}
	p, err := parameterSetFor(info.Algorithm, info.HasParameters)
	if err != nil {
		return nil, err
	}
	return NewPublicKey(p, info.PublicKey)
}

var tagSeed = cbasn1.Tag(0).ContextSpecific()

// MarshalPKCS8PrivateKey returns the PKCS#8 encoding of sk. Keys with a
// seed are written seed-only (`[0] IMPLICIT OCTET STRING (32)`), the form
// RFC 9881 recommends; keys imported from an expanded-only encoding are
// written as expandedKey.
func MarshalPKCS8PrivateKey(sk *PrivateKey) ([]byte, error) {
	var b cryptobyte.Builder
	if sk.seed != nil {
		b.AddASN1(tagSeed, func(b *cryptobyte.Builder) { b.AddBytes(sk.seed) })
	} else {
		b.AddASN1OctetString(sk.ExpandedKey())
	}
	inner, err := b.Bytes()
	if err != nil {
		return nil, err
	}
	return der.MarshalPrivateKeyInfo(sk.params.oid, inner)
}

// ParsePKCS8PrivateKey parses a PKCS#8 ML-DSA private key in any of the
// three RFC 9881 forms: seed, expandedKey, or both. A "both" key must have
// the expanded key its seed derives (ErrSeedMismatch); an expanded-only key
// must pass the consistency checks of NewKeyFromExpanded.
func ParsePKCS8PrivateKey(pkcs8 []byte) (*PrivateKey, error) {
	info, err := der.ParsePrivateKeyInfo(pkcs8)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedPrivateKey, err)
	}
	p, err := parameterSetFor(info.Algorithm, info.HasParameters)
	if err != nil {
		return nil, err
	}
	sk, err := parsePrivateKeyChoice(p, info.PrivateKey)
	if err != nil {
		return nil, err
	}
	if info.PublicKey != nil && subtle.ConstantTimeCompare(info.PublicKey, sk.pub.raw) != 1 {
		return nil, ErrPublicKeyMismatch
	}
	return sk, nil
}

// parsePrivateKeyChoice parses the RFC 9881 ML-DSA-PrivateKey CHOICE.
func parsePrivateKeyChoice(p *ParameterSet, b []byte) (*PrivateKey, error) {
	s := cryptobyte.String(b)
	switch {
	case s.PeekASN1Tag(tagSeed):
		var seed cryptobyte.String
		if !s.ReadASN1(&seed, tagSeed) || !s.Empty() {
			return nil, fmt.Errorf("%w: bad seed encoding", ErrMalformedPrivateKey)
		}
		return NewKeyFromSeed(p, seed)
	case s.PeekASN1Tag(cbasn1.OCTET_STRING):
		var expanded cryptobyte.String
		if !s.ReadASN1(&expanded, cbasn1.OCTET_STRING) || !s.Empty() {
			return nil, fmt.Errorf("%w: bad expandedKey encoding", ErrMalformedPrivateKey)
		}
		return NewKeyFromExpanded(p, expanded)
	case s.PeekASN1Tag(cbasn1.SEQUENCE):
		var both, seed, expanded cryptobyte.String
		if !s.ReadASN1(&both, cbasn1.SEQUENCE) || !s.Empty() ||
			!both.ReadASN1(&seed, cbasn1.OCTET_STRING) ||
			!both.ReadASN1(&expanded, cbasn1.OCTET_STRING) || !both.Empty() {
			return nil, fmt.Errorf("%w: bad both encoding", ErrMalformedPrivateKey)
		}
		if len(expanded) != p.expandedKeySize {
			return nil, fmt.Errorf("%w: %s expanded key is %d bytes, want %d", ErrMalformedPrivateKey, p.name, len(expanded), p.expandedKeySize)
		}
		sk, err := NewKeyFromSeed(p, seed)
		if err != nil {
			return nil, err
		}
		if subtle.ConstantTimeCompare(sk.ExpandedKey(), expanded) != 1 {
			return nil, ErrSeedMismatch
		}
		return sk, nil
	default:
		return nil, fmt.Errorf("%w: unknown ML-DSA-PrivateKey CHOICE", ErrMalformedPrivateKey)
	}
}

// PEM block types.
const (
	PEMTypePrivateKey = "PRIVATE KEY"
	PEMTypePublicKey  = "PUBLIC KEY"
)

// MarshalPrivateKeyPEM returns sk as a "PRIVATE KEY" PEM block (PKCS#8).
func MarshalPrivateKeyPEM(sk *PrivateKey) ([]byte, error) {
	b, err := MarshalPKCS8PrivateKey(sk)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: PEMTypePrivateKey, Bytes: b}), nil
}

// ParsePrivateKeyPEM parses the first "PRIVATE KEY" PEM block.
func ParsePrivateKeyPEM(data []byte) (*PrivateKey, error) {
	b, err := decodePEM(data, PEMTypePrivateKey)
	if err != nil {
		return nil, err
	}
	return ParsePKCS8PrivateKey(b)
}

// MarshalPublicKeyPEM returns pk as a "PUBLIC KEY" PEM block (SPKI).
func MarshalPublicKeyPEM(pk *PublicKey) ([]byte, error) {
	b, err := MarshalPKIXPublicKey(pk)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: PEMTypePublicKey, Bytes: b}), nil
}

// ParsePublicKeyPEM parses the first "PUBLIC KEY" PEM block.
func ParsePublicKeyPEM(data []byte) (*PublicKey, error) {
	b, err := decodePEM(data, PEMTypePublicKey)
	if err != nil {
		return nil, err
	}
	return ParsePKIXPublicKey(b)
}

func decodePEM(data []byte, typ string) ([]byte, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, fmt.Errorf("mldsa: no %q PEM block found", typ)
		}
		if block.Type == typ {
			return block.Bytes, nil
		}
	}
}

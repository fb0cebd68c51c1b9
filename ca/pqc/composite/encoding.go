package composite

import (
	"crypto/ecdsa"
	"encoding/asn1"
	"errors"
	"fmt"

	"github.com/meshca/meshca/ca/internal/der"
	"github.com/meshca/meshca/ca/pqc/mldsa"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

var (
	// ErrMalformedPrivateKey: the composite private key encoding is invalid.
	ErrMalformedPrivateKey = errors.New("composite: malformed private key")
	// ErrParametersPresent: the AlgorithmIdentifier has parameters; the
	// draft requires them to be absent.
	ErrParametersPresent = errors.New("composite: AlgorithmIdentifier parameters must be absent")
	// ErrPublicKeyMismatch: a PKCS#8 v2 publicKey does not match.
	ErrPublicKeyMismatch = errors.New("composite: PKCS#8 publicKey does not match the private key")
)

func algorithmFor(oid asn1.ObjectIdentifier, hasParams bool) (*Algorithm, error) {
	alg, ok := AlgorithmByOID(oid)
	if !ok {
		return nil, fmt.Errorf("%w (OID %s)", ErrNotComposite, oid)
	}
	if hasParams {
		return nil, fmt.Errorf("%w (%s)", ErrParametersPresent, alg.name)
	}
	return alg, nil
}

// MarshalPKIXPublicKey returns the DER SubjectPublicKeyInfo: the composite
// OID with absent parameters and mldsaPK || tradPK in the BIT STRING.
func MarshalPKIXPublicKey(pk *PublicKey) ([]byte, error) {
	return der.MarshalPublicKeyInfo(pk.alg.OID(), pk.Bytes())
}

// ParsePKIXPublicKey parses a DER SubjectPublicKeyInfo holding a composite
// public key of any draft-19 algorithm. ECDSA components must be
// uncompressed points (ErrCompressedPoint otherwise).
func ParsePKIXPublicKey(spki []byte) (*PublicKey, error) {
	info, err := der.ParsePublicKeyInfo(spki)
	if err != nil {
		return nil, fmt.Errorf("composite: %w", err)
	}
	alg, err := algorithmFor(info.Algorithm, info.HasParameters)
	if err != nil {
		return nil, err
	}
	return NewPublicKey(alg, info.PublicKey)
}

var tagECParams = cbasn1.Tag(0).ContextSpecific().Constructed()
var tagECPublicKey = cbasn1.Tag(1).ContextSpecific().Constructed()

// bytes returns the draft-19 serialization mldsaSeed || ECPrivateKey, where
// ECPrivateKey (RFC 5915) carries the named curve and omits publicKey.
func (sk *PrivateKey) bytes() ([]byte, error) {
	seed := sk.mldsa.Seed()
	if seed == nil {
		return nil, fmt.Errorf("%w: ML-DSA component has no seed", ErrMalformedPrivateKey)
	}
	d, err := sk.ecdsa.Bytes()
	if err != nil {
		return nil, fmt.Errorf("composite: encoding ECDSA private key: %w", err)
	}
	var b cryptobyte.Builder
	b.AddBytes(seed)
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(1)
		b.AddASN1OctetString(d)
		b.AddASN1(tagECParams, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(sk.alg.curveID)
		})
	})
	return b.Bytes()
}

// NewPrivateKey parses the draft-19 private key serialization
// mldsaSeed (32 bytes) || ECPrivateKey, the content of the PKCS#8
// privateKey OCTET STRING (and the "sk" field of the test vectors).
func NewPrivateKey(alg *Algorithm, raw []byte) (*PrivateKey, error) {
	if alg == nil {
		return nil, errors.New("composite: nil algorithm")
	}
	if !alg.signs {
		return nil, fmt.Errorf("%w (got %s)", ErrSigningUnsupported, alg.name)
	}
	if len(raw) <= mldsa.SeedSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrMalformedPrivateKey, len(raw))
	}
	m, err := mldsa.NewKeyFromSeed(alg.mldsa, raw[:mldsa.SeedSize])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedPrivateKey, err)
	}
	s := cryptobyte.String(raw[mldsa.SeedSize:])
	var ecpk, d cryptobyte.String
	var version int
	var curve asn1.ObjectIdentifier
	if !s.ReadASN1(&ecpk, cbasn1.SEQUENCE) || !s.Empty() ||
		!ecpk.ReadASN1Integer(&version) || version != 1 ||
		!ecpk.ReadASN1(&d, cbasn1.OCTET_STRING) {
		return nil, fmt.Errorf("%w: bad ECPrivateKey", ErrMalformedPrivateKey)
	}
	var params cryptobyte.String
	if !ecpk.ReadASN1(&params, tagECParams) || !params.ReadASN1ObjectIdentifier(&curve) || !params.Empty() {
		return nil, fmt.Errorf("%w: ECPrivateKey must name its curve", ErrMalformedPrivateKey)
	}
	if !curve.Equal(alg.curveID) {
		return nil, fmt.Errorf("%w: ECPrivateKey curve %s, want %s", ErrMalformedPrivateKey, curve, alg.curveID)
	}
	if ecpk.PeekASN1Tag(tagECPublicKey) {
		return nil, fmt.Errorf("%w: ECPrivateKey must omit publicKey", ErrMalformedPrivateKey)
	}
	if !ecpk.Empty() {
		return nil, fmt.Errorf("%w: trailing data in ECPrivateKey", ErrMalformedPrivateKey)
	}
	e, err := ecdsa.ParseRawPrivateKey(alg.curve, d)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedPrivateKey, err)
	}
	return newPrivateKey(alg, m, e)
}

// MarshalPKCS8PrivateKey returns the PKCS#8 encoding: the composite OID
// with absent parameters and mldsaSeed || ECPrivateKey as privateKey.
func MarshalPKCS8PrivateKey(sk *PrivateKey) ([]byte, error) {
	raw, err := sk.bytes()
	if err != nil {
		return nil, err
	}
	return der.MarshalPrivateKeyInfo(sk.alg.OID(), raw)
}

// ParsePKCS8PrivateKey parses a PKCS#8 composite private key of one of the
// two signing algorithms.
func ParsePKCS8PrivateKey(pkcs8 []byte) (*PrivateKey, error) {
	info, err := der.ParsePrivateKeyInfo(pkcs8)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedPrivateKey, err)
	}
	alg, err := algorithmFor(info.Algorithm, info.HasParameters)
	if err != nil {
		return nil, err
	}
	sk, err := NewPrivateKey(alg, info.PrivateKey)
	if err != nil {
		return nil, err
	}
	if info.PublicKey != nil {
		pub, err := NewPublicKey(alg, info.PublicKey)
		if err != nil || !pub.Equal(sk.pub) {
			return nil, ErrPublicKeyMismatch
		}
	}
	return sk, nil
}

// Package der owns the small DER envelopes shared by meshca's certificate
// encoder (ca/certenc) and its post-quantum key packages:
// SubjectPublicKeyInfo (RFC 5280 §4.1.2.7) and
// OneAsymmetricKey / PKCS#8 (RFC 5958), both with an AlgorithmIdentifier
// whose parameters are absent, as RFC 9881 and the composite ML-DSA draft
// require. It knows nothing about key contents; callers interpret the bytes.
package der

import (
	"encoding/asn1"
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// PublicKeyInfo is a parsed SubjectPublicKeyInfo.
type PublicKeyInfo struct {
	Algorithm asn1.ObjectIdentifier
	// HasParameters reports whether the AlgorithmIdentifier carried a
	// parameters field (even NULL).
	HasParameters bool
	// PublicKey is the content of the BIT STRING (no unused bits allowed).
	PublicKey []byte
}

// ParseAlgorithmIdentifier parses a DER AlgorithmIdentifier and reports
// whether parameters were present. Trailing data is an error.
func ParseAlgorithmIdentifier(der []byte) (asn1.ObjectIdentifier, bool, error) {
	s := cryptobyte.String(der)
	var algID cryptobyte.String
	if !s.ReadASN1(&algID, cbasn1.SEQUENCE) || !s.Empty() {
		return nil, false, errors.New("malformed AlgorithmIdentifier")
	}
	return parseAlgID(algID)
}

func parseAlgID(algID cryptobyte.String) (asn1.ObjectIdentifier, bool, error) {
	var oid asn1.ObjectIdentifier
	if !algID.ReadASN1ObjectIdentifier(&oid) {
		return nil, false, errors.New("malformed AlgorithmIdentifier OID")
	}
	if algID.Empty() {
		return oid, false, nil
	}
	var params cryptobyte.String
	var tag cbasn1.Tag
	if !algID.ReadAnyASN1Element(&params, &tag) || !algID.Empty() {
		return nil, false, errors.New("malformed AlgorithmIdentifier parameters")
	}
	return oid, true, nil
}

// ParsePublicKeyInfo parses a DER SubjectPublicKeyInfo.
func ParsePublicKeyInfo(der []byte) (*PublicKeyInfo, error) {
	s := cryptobyte.String(der)
	var spki, algID cryptobyte.String
	var bits asn1.BitString
	if !s.ReadASN1(&spki, cbasn1.SEQUENCE) || !s.Empty() {
		return nil, errors.New("malformed SubjectPublicKeyInfo")
	}
	if !spki.ReadASN1(&algID, cbasn1.SEQUENCE) {
		return nil, errors.New("malformed SubjectPublicKeyInfo algorithm")
	}
	oid, hasParams, err := parseAlgID(algID)
	if err != nil {
		return nil, err
	}
	if !spki.ReadASN1BitString(&bits) || !spki.Empty() {
		return nil, errors.New("malformed SubjectPublicKeyInfo BIT STRING")
	}
	if bits.BitLength%8 != 0 {
		return nil, errors.New("SubjectPublicKeyInfo BIT STRING has unused bits")
	}
	return &PublicKeyInfo{Algorithm: oid, HasParameters: hasParams, PublicKey: bits.Bytes}, nil
}

// MarshalPublicKeyInfo encodes a SubjectPublicKeyInfo whose
// AlgorithmIdentifier has absent parameters.
func MarshalPublicKeyInfo(oid asn1.ObjectIdentifier, key []byte) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		AddAlgorithmIdentifier(b, oid)
		b.AddASN1BitString(key)
	})
	return b.Bytes()
}

// MarshalAlgorithmIdentifier encodes an AlgorithmIdentifier with absent
// parameters.
func MarshalAlgorithmIdentifier(oid asn1.ObjectIdentifier) ([]byte, error) {
	var b cryptobyte.Builder
	AddAlgorithmIdentifier(&b, oid)
	return b.Bytes()
}

// AddAlgorithmIdentifier appends an AlgorithmIdentifier with absent
// parameters to b.
func AddAlgorithmIdentifier(b *cryptobyte.Builder, oid asn1.ObjectIdentifier) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
	})
}

// PrivateKeyInfo is a parsed OneAsymmetricKey (PKCS#8 v1 or v2).
type PrivateKeyInfo struct {
	Version       int
	Algorithm     asn1.ObjectIdentifier
	HasParameters bool
	// PrivateKey is the content of the privateKey OCTET STRING.
	PrivateKey []byte
	// PublicKey is the content of the optional [1] publicKey BIT STRING
	// (OneAsymmetricKey v2); nil when absent.
	PublicKey []byte
}

var (
	tagAttributes = cbasn1.Tag(0).ContextSpecific().Constructed()
	tagPublicKey  = cbasn1.Tag(1).ContextSpecific()
)

// ParsePrivateKeyInfo parses a DER OneAsymmetricKey. Attributes are skipped.
func ParsePrivateKeyInfo(der []byte) (*PrivateKeyInfo, error) {
	s := cryptobyte.String(der)
	var oak, algID cryptobyte.String
	var version int
	if !s.ReadASN1(&oak, cbasn1.SEQUENCE) || !s.Empty() {
		return nil, errors.New("malformed PKCS#8 OneAsymmetricKey")
	}
	if !oak.ReadASN1Integer(&version) || (version != 0 && version != 1) {
		return nil, errors.New("PKCS#8 version must be 0 or 1")
	}
	if !oak.ReadASN1(&algID, cbasn1.SEQUENCE) {
		return nil, errors.New("malformed PKCS#8 privateKeyAlgorithm")
	}
	oid, hasParams, err := parseAlgID(algID)
	if err != nil {
		return nil, err
	}
	info := &PrivateKeyInfo{Version: version, Algorithm: oid, HasParameters: hasParams}
	var priv cryptobyte.String
	if !oak.ReadASN1(&priv, cbasn1.OCTET_STRING) {
		return nil, errors.New("malformed PKCS#8 privateKey OCTET STRING")
	}
	info.PrivateKey = priv
	if !oak.SkipOptionalASN1(tagAttributes) {
		return nil, errors.New("malformed PKCS#8 attributes")
	}
	if oak.PeekASN1Tag(tagPublicKey) {
		if version != 1 {
			return nil, errors.New("PKCS#8 publicKey requires version 1 (v2)")
		}
		var pub cryptobyte.String
		if !oak.ReadASN1(&pub, tagPublicKey) || len(pub) < 1 || pub[0] != 0 {
			return nil, errors.New("malformed PKCS#8 publicKey")
		}
		info.PublicKey = pub[1:]
	}
	if !oak.Empty() {
		return nil, fmt.Errorf("trailing data in PKCS#8 OneAsymmetricKey")
	}
	return info, nil
}

// MarshalPrivateKeyInfo encodes a version 0 PrivateKeyInfo whose
// AlgorithmIdentifier has absent parameters; privateKey is the content of
// the privateKey OCTET STRING.
func MarshalPrivateKeyInfo(oid asn1.ObjectIdentifier, privateKey []byte) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(0)
		AddAlgorithmIdentifier(b, oid)
		b.AddASN1OctetString(privateKey)
	})
	return b.Bytes()
}

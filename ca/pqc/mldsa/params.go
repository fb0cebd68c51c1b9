// Package mldsa owns pure ML-DSA (FIPS 204) keys as meshca uses them in
// X.509 (RFC 9881): key generation, a seed-keeping private key that
// implements crypto.Signer with hedged signing and an empty context,
// PKCS#8 / SubjectPublicKeyInfo / PEM encodings, and signature
// verification. The lattice arithmetic is cloudflare/circl's; this package
// adds the X.509 encodings and the RFC 9881 private-key consistency checks.
//
// It must not build certificates, and it knows nothing about composite or
// Catalyst signatures; those live in sibling packages. HashML-DSA is never
// produced or accepted.
package mldsa

import (
	"encoding/asn1"

	"github.com/cloudflare/circl/sign"
	"github.com/cloudflare/circl/sign/mldsa/mldsa44"
	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/cloudflare/circl/sign/mldsa/mldsa87"
)

// SeedSize is the size of the ML-DSA key-generation seed ξ in bytes.
const SeedSize = 32

// MaxContextSize is the largest context string FIPS 204 allows.
const MaxContextSize = 255

// ParameterSet is one of the three ML-DSA parameter sets. Compare them by
// pointer: MLDSA44, MLDSA65 and MLDSA87 are the only values.
type ParameterSet struct {
	name             string
	oid              asn1.ObjectIdentifier
	publicKeySize    int
	signatureSize    int
	expandedKeySize  int
	k, l, eta        int
	securityCategory int

	scheme sign.Scheme
	signTo func(sk sign.PrivateKey, msg, ctx []byte, sig []byte) error
	verify func(pk sign.PublicKey, msg, ctx, sig []byte) bool
}

var (
	// MLDSA44 is ML-DSA-44 (id-ml-dsa-44, 2.16.840.1.101.3.4.3.17).
	MLDSA44 = &ParameterSet{
		name: "ML-DSA-44", oid: asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 3, 17},
		publicKeySize: mldsa44.PublicKeySize, signatureSize: mldsa44.SignatureSize,
		expandedKeySize: mldsa44.PrivateKeySize, k: 4, l: 4, eta: 2, securityCategory: 2,
		scheme: mldsa44.Scheme(),
		signTo: func(sk sign.PrivateKey, msg, ctx, sig []byte) error {
			return mldsa44.SignTo(sk.(*mldsa44.PrivateKey), msg, ctx, true, sig)
		},
		verify: func(pk sign.PublicKey, msg, ctx, sig []byte) bool {
			return mldsa44.Verify(pk.(*mldsa44.PublicKey), msg, ctx, sig)
		},
	}
	// MLDSA65 is ML-DSA-65 (id-ml-dsa-65, 2.16.840.1.101.3.4.3.18), meshca's
	// default.
	MLDSA65 = &ParameterSet{
		name: "ML-DSA-65", oid: asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 3, 18},
		publicKeySize: mldsa65.PublicKeySize, signatureSize: mldsa65.SignatureSize,
		expandedKeySize: mldsa65.PrivateKeySize, k: 6, l: 5, eta: 4, securityCategory: 3,
		scheme: mldsa65.Scheme(),
		signTo: func(sk sign.PrivateKey, msg, ctx, sig []byte) error {
			return mldsa65.SignTo(sk.(*mldsa65.PrivateKey), msg, ctx, true, sig)
		},
		verify: func(pk sign.PublicKey, msg, ctx, sig []byte) bool {
			return mldsa65.Verify(pk.(*mldsa65.PublicKey), msg, ctx, sig)
		},
	}
	// MLDSA87 is ML-DSA-87 (id-ml-dsa-87, 2.16.840.1.101.3.4.3.19).
	MLDSA87 = &ParameterSet{
		name: "ML-DSA-87", oid: asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 3, 19},
		publicKeySize: mldsa87.PublicKeySize, signatureSize: mldsa87.SignatureSize,
		expandedKeySize: mldsa87.PrivateKeySize, k: 8, l: 7, eta: 2, securityCategory: 5,
		scheme: mldsa87.Scheme(),
		signTo: func(sk sign.PrivateKey, msg, ctx, sig []byte) error {
			return mldsa87.SignTo(sk.(*mldsa87.PrivateKey), msg, ctx, true, sig)
		},
		verify: func(pk sign.PublicKey, msg, ctx, sig []byte) bool {
			return mldsa87.Verify(pk.(*mldsa87.PublicKey), msg, ctx, sig)
		},
	}
)

// Default is the parameter set meshca uses when none is configured.
var Default = MLDSA65

// ParameterSets returns ML-DSA-44, -65 and -87, in that order.
func ParameterSets() []*ParameterSet { return []*ParameterSet{MLDSA44, MLDSA65, MLDSA87} }

// ParameterSetByOID returns the parameter set whose RFC 9881 OID is oid.
func ParameterSetByOID(oid asn1.ObjectIdentifier) (*ParameterSet, bool) {
	for _, p := range ParameterSets() {
		if p.oid.Equal(oid) {
			return p, true
		}
	}
	return nil, false
}

// ParameterSetByName returns the parameter set named "ML-DSA-44",
// "ML-DSA-65" or "ML-DSA-87".
func ParameterSetByName(name string) (*ParameterSet, bool) {
	for _, p := range ParameterSets() {
		if p.name == name {
			return p, true
		}
	}
	return nil, false
}

// Name returns "ML-DSA-44", "ML-DSA-65" or "ML-DSA-87".
func (p *ParameterSet) Name() string { return p.name }

// String returns Name.
func (p *ParameterSet) String() string { return p.name }

// OID returns the RFC 9881 OID, which names both the key and the signature.
func (p *ParameterSet) OID() asn1.ObjectIdentifier {
	return append(asn1.ObjectIdentifier(nil), p.oid...)
}

// PublicKeySize returns the size of the raw FIPS 204 public key
// (1312, 1952 or 2592 bytes).
func (p *ParameterSet) PublicKeySize() int { return p.publicKeySize }

// SignatureSize returns the size of a signature (2420, 3309 or 4627 bytes).
func (p *ParameterSet) SignatureSize() int { return p.signatureSize }

// ExpandedKeySize returns the size of the FIPS 204 expanded private key
// (2560, 4032 or 4896 bytes).
func (p *ParameterSet) ExpandedKeySize() int { return p.expandedKeySize }

// SecurityCategory returns the NIST security category (2, 3 or 5).
func (p *ParameterSet) SecurityCategory() int { return p.securityCategory }

package pqc

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"sort"

	"github.com/meshca/meshca/ca/internal/der"
	"github.com/meshca/meshca/ca/pqc/composite"
	"github.com/meshca/meshca/ca/pqc/mldsa"
)

// ParsePKIXPublicKey parses a DER SubjectPublicKeyInfo of any key meshca
// handles: *mldsa.PublicKey, *composite.PublicKey, or whatever
// crypto/x509.ParsePKIXPublicKey returns for classical keys.
func ParsePKIXPublicKey(spki []byte) (crypto.PublicKey, error) {
	info, err := der.ParsePublicKeyInfo(spki)
	if err != nil {
		return nil, fmt.Errorf("pqc: %w", err)
	}
	switch familyOf(info.Algorithm) {
	case familyMLDSA, familyHashMLDSA:
		return mldsa.ParsePKIXPublicKey(spki)
	case familyComposite:
		return composite.ParsePKIXPublicKey(spki)
	}
	return x509.ParsePKIXPublicKey(spki)
}

// MarshalPKIXPublicKey returns the DER SubjectPublicKeyInfo of pub, which
// may be an ML-DSA, composite or classical public key. This is how the
// certificate encoder and the CA engine get the SPKI of a PQ key.
func MarshalPKIXPublicKey(pub crypto.PublicKey) ([]byte, error) {
	switch k := pub.(type) {
	case *mldsa.PublicKey:
		return mldsa.MarshalPKIXPublicKey(k)
	case *composite.PublicKey:
		return composite.MarshalPKIXPublicKey(k)
	}
	return x509.MarshalPKIXPublicKey(pub)
}

// ParsePKCS8PrivateKey parses a PKCS#8 private key: *mldsa.PrivateKey,
// *composite.PrivateKey, or a classical key from crypto/x509 (which must
// implement crypto.Signer).
func ParsePKCS8PrivateKey(pkcs8 []byte) (crypto.Signer, error) {
	info, err := der.ParsePrivateKeyInfo(pkcs8)
	if err != nil {
		return nil, fmt.Errorf("pqc: %w", err)
	}
	switch familyOf(info.Algorithm) {
	case familyMLDSA, familyHashMLDSA:
		return mldsa.ParsePKCS8PrivateKey(pkcs8)
	case familyComposite:
		return composite.ParsePKCS8PrivateKey(pkcs8)
	}
	key, err := x509.ParsePKCS8PrivateKey(pkcs8)
	if err != nil {
		return nil, err
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("pqc: %T is not a crypto.Signer", key)
	}
	return signer, nil
}

// MarshalPKCS8PrivateKey returns the PKCS#8 encoding of an ML-DSA
// (seed-only), composite or classical private key.
func MarshalPKCS8PrivateKey(key crypto.PrivateKey) ([]byte, error) {
	switch k := key.(type) {
	case *mldsa.PrivateKey:
		return mldsa.MarshalPKCS8PrivateKey(k)
	case *composite.PrivateKey:
		return composite.MarshalPKCS8PrivateKey(k)
	}
	return x509.MarshalPKCS8PrivateKey(key)
}

// MarshalPrivateKeyPEM returns key as a "PRIVATE KEY" PEM block.
func MarshalPrivateKeyPEM(key crypto.PrivateKey) ([]byte, error) {
	b, err := MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: b}), nil
}

// ParsePrivateKeyPEM parses the first "PRIVATE KEY" PEM block in data.
func ParsePrivateKeyPEM(data []byte) (crypto.Signer, error) {
	b, err := firstPEM(data, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	return ParsePKCS8PrivateKey(b)
}

// MarshalPublicKeyPEM returns pub as a "PUBLIC KEY" PEM block.
func MarshalPublicKeyPEM(pub crypto.PublicKey) ([]byte, error) {
	b, err := MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: b}), nil
}

// ParsePublicKeyPEM parses the first "PUBLIC KEY" PEM block in data.
func ParsePublicKeyPEM(data []byte) (crypto.PublicKey, error) {
	b, err := firstPEM(data, "PUBLIC KEY")
	if err != nil {
		return nil, err
	}
	return ParsePKIXPublicKey(b)
}

func firstPEM(data []byte, typ string) ([]byte, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, fmt.Errorf("pqc: no %q PEM block found", typ)
		}
		if block.Type == typ {
			return block.Bytes, nil
		}
	}
}

// SigningAlgorithms returns the names GenerateKey accepts: "ML-DSA-44",
// "ML-DSA-65", "ML-DSA-87", "MLDSA44-ECDSA-P256-SHA256" and
// "MLDSA65-ECDSA-P256-SHA512", sorted.
func SigningAlgorithms() []string {
	var names []string
	for _, p := range mldsa.ParameterSets() {
		names = append(names, p.Name())
	}
	for _, a := range composite.Algorithms() {
		if a.CanSign() {
			names = append(names, a.Name())
		}
	}
	sort.Strings(names)
	return names
}

// GenerateKey creates a post-quantum signing key by algorithm name (see
// SigningAlgorithms); random may be nil for crypto/rand. The result is an
// *mldsa.PrivateKey or a *composite.PrivateKey.
func GenerateKey(algorithm string, random io.Reader) (crypto.Signer, error) {
	if p, ok := mldsa.ParameterSetByName(algorithm); ok {
		return mldsa.GenerateKey(p, random)
	}
	if a, ok := composite.AlgorithmByName(algorithm); ok && a.CanSign() {
		return composite.GenerateKey(a, random)
	}
	return nil, fmt.Errorf("pqc: unknown signing algorithm %q (want one of %v)", algorithm, SigningAlgorithms())
}

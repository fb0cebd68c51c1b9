package mldsa

import (
	"crypto"
	"crypto/rand"
	"crypto/subtle"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"

	"github.com/cloudflare/circl/sign"
)

var (
	// ErrInvalidSignature is returned when a signature does not verify.
	ErrInvalidSignature = errors.New("mldsa: signature does not verify")
	// ErrContextTooLong is returned for a context longer than 255 bytes.
	ErrContextTooLong = errors.New("mldsa: context longer than 255 bytes")
	// ErrUnsupportedSignerOpts is returned by Sign when opts is anything but
	// nil or crypto.Hash(0): meshca signs with pure ML-DSA over the full
	// message, never HashML-DSA over a digest.
	ErrUnsupportedSignerOpts = errors.New("mldsa: SignerOpts must be crypto.Hash(0) (pure ML-DSA signs the full message)")
)

// PublicKey is an ML-DSA public key.
type PublicKey struct {
	params *ParameterSet
	raw    []byte
	key    sign.PublicKey
}

// NewPublicKey parses the raw FIPS 204 encoding of a public key.
func NewPublicKey(p *ParameterSet, raw []byte) (*PublicKey, error) {
	if p == nil {
		return nil, errors.New("mldsa: nil parameter set")
	}
	if len(raw) != p.publicKeySize {
		return nil, fmt.Errorf("mldsa: %s public key is %d bytes, want %d", p.name, len(raw), p.publicKeySize)
	}
	k, err := p.scheme.UnmarshalBinaryPublicKey(raw)
	if err != nil {
		return nil, fmt.Errorf("mldsa: %s public key: %w", p.name, err)
	}
	return &PublicKey{params: p, raw: append([]byte(nil), raw...), key: k}, nil
}

// ParameterSet returns the key's parameter set.
func (pk *PublicKey) ParameterSet() *ParameterSet { return pk.params }

// Bytes returns a copy of the raw FIPS 204 public key, the content of the
// SubjectPublicKeyInfo BIT STRING.
func (pk *PublicKey) Bytes() []byte { return append([]byte(nil), pk.raw...) }

// Equal reports whether x is an ML-DSA public key with the same parameter
// set and value.
func (pk *PublicKey) Equal(x crypto.PublicKey) bool {
	o, ok := x.(*PublicKey)
	return ok && o.params == pk.params && subtle.ConstantTimeCompare(o.raw, pk.raw) == 1
}

// Verify checks a pure ML-DSA signature over message with an empty context,
// the RFC 9881 rule for certificates and CRLs.
func (pk *PublicKey) Verify(message, signature []byte) error {
	return pk.VerifyWithContext(message, nil, signature)
}

// VerifyWithContext checks a pure ML-DSA signature over message with the
// given context string.
func (pk *PublicKey) VerifyWithContext(message, context, signature []byte) error {
	if len(context) > MaxContextSize {
		return ErrContextTooLong
	}
	if len(signature) != pk.params.signatureSize {
		return fmt.Errorf("%w: %s signature is %d bytes, want %d", ErrInvalidSignature, pk.params.name, len(signature), pk.params.signatureSize)
	}
	if !pk.params.verify(pk.key, message, context, signature) {
		return fmt.Errorf("%w (%s)", ErrInvalidSignature, pk.params.name)
	}
	return nil
}

// PrivateKey is an ML-DSA private key. Unlike circl's key it always keeps
// the 32-byte seed when it has one, so that it can be stored in the
// seed-only form RFC 9881 recommends. Keys imported from an expanded-only
// encoding have no seed.
//
// PrivateKey implements crypto.Signer: Sign takes the full message (opts
// must be crypto.Hash(0)), uses an empty context and hedged randomness.
type PrivateKey struct {
	params *ParameterSet
	seed   []byte // nil for expanded-only keys
	key    sign.PrivateKey
	pub    *PublicKey
}

// GenerateKey creates a key from a fresh 32-byte seed read from random
// (crypto/rand.Reader when nil). A nil parameter set means Default.
func GenerateKey(p *ParameterSet, random io.Reader) (*PrivateKey, error) {
	if p == nil {
		p = Default
	}
	if random == nil {
		random = rand.Reader
	}
	seed := make([]byte, SeedSize)
	if _, err := io.ReadFull(random, seed); err != nil {
		return nil, fmt.Errorf("mldsa: reading seed: %w", err)
	}
	return NewKeyFromSeed(p, seed)
}

// NewKeyFromSeed derives a key pair from a 32-byte seed (FIPS 204
// ML-DSA.KeyGen_internal).
func NewKeyFromSeed(p *ParameterSet, seed []byte) (*PrivateKey, error) {
	if p == nil {
		return nil, errors.New("mldsa: nil parameter set")
	}
	if len(seed) != SeedSize {
		return nil, fmt.Errorf("%w: seed is %d bytes, want %d", ErrMalformedPrivateKey, len(seed), SeedSize)
	}
	pk, sk := p.scheme.DeriveKey(seed)
	return newPrivateKey(p, append([]byte(nil), seed...), pk, sk)
}

// NewKeyFromExpanded imports an expanded FIPS 204 private key after the
// consistency checks RFC 9881 §6 asks for: the s1 and s2 coefficients are
// in range, t0 matches A·s1+s2, and tr is the hash of the derived public
// key. The result has no seed.
func NewKeyFromExpanded(p *ParameterSet, expanded []byte) (*PrivateKey, error) {
	if p == nil {
		return nil, errors.New("mldsa: nil parameter set")
	}
	if len(expanded) != p.expandedKeySize {
		return nil, fmt.Errorf("%w: %s expanded key is %d bytes, want %d", ErrMalformedPrivateKey, p.name, len(expanded), p.expandedKeySize)
	}
	derivedPub, err := checkExpandedKey(p, expanded)
	if err != nil {
		return nil, err
	}
	sk, err := p.scheme.UnmarshalBinaryPrivateKey(expanded)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedPrivateKey, err)
	}
	pk := sk.Public().(sign.PublicKey)
	key, err := newPrivateKey(p, nil, pk, sk)
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(key.pub.raw, derivedPub) != 1 {
		// circl and the independent check disagree: refuse rather than guess.
		return nil, fmt.Errorf("%w: derived public keys disagree", ErrExpandedKeyInconsistent)
	}
	return key, nil
}

func newPrivateKey(p *ParameterSet, seed []byte, pk sign.PublicKey, sk sign.PrivateKey) (*PrivateKey, error) {
	raw, err := pk.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("mldsa: packing public key: %w", err)
	}
	return &PrivateKey{
		params: p,
		seed:   seed,
		key:    sk,
		pub:    &PublicKey{params: p, raw: raw, key: pk},
	}, nil
}

// ParameterSet returns the key's parameter set.
func (sk *PrivateKey) ParameterSet() *ParameterSet { return sk.params }

// Seed returns a copy of the 32-byte seed, or nil when the key was imported
// from an expanded-only encoding.
func (sk *PrivateKey) Seed() []byte {
	if sk.seed == nil {
		return nil
	}
	return append([]byte(nil), sk.seed...)
}

// ExpandedKey returns the FIPS 204 expanded private key encoding.
func (sk *PrivateKey) ExpandedKey() []byte {
	b, err := sk.key.MarshalBinary()
	if err != nil {
		panic("mldsa: packing private key: " + err.Error()) // circl never fails here
	}
	return b
}

// Public returns the *PublicKey; it implements crypto.Signer.
func (sk *PrivateKey) Public() crypto.PublicKey { return sk.pub }

// PublicKey returns the public half.
func (sk *PrivateKey) PublicKey() *PublicKey { return sk.pub }

// Equal reports whether x is the same ML-DSA private key.
func (sk *PrivateKey) Equal(x crypto.PrivateKey) bool {
	o, ok := x.(*PrivateKey)
	if !ok || o.params != sk.params {
		return false
	}
	return subtle.ConstantTimeCompare(o.ExpandedKey(), sk.ExpandedKey()) == 1
}

// SignatureAlgorithm returns the AlgorithmIdentifier of the signatures this
// key makes: the RFC 9881 OID with parameters absent. Certificate and CRL
// encoders use it for the signature fields.
func (sk *PrivateKey) SignatureAlgorithm() pkix.AlgorithmIdentifier {
	return pkix.AlgorithmIdentifier{Algorithm: sk.params.OID()}
}

// Sign signs the full message with pure ML-DSA, an empty context and
// hedged randomness (FIPS 204 default). opts must be nil or crypto.Hash(0).
// random is ignored: circl draws the hedging randomness from crypto/rand.
func (sk *PrivateKey) Sign(_ io.Reader, message []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts != nil {
		if h, ok := opts.(crypto.Hash); !ok || h != 0 {
			return nil, fmt.Errorf("%w (got %T %v)", ErrUnsupportedSignerOpts, opts, opts.HashFunc())
		}
	}
	return sk.SignWithContext(message, nil)
}

// SignMessage is Sign; it makes PrivateKey a crypto.MessageSigner, so that
// crypto.SignMessage never pre-hashes for it.
func (sk *PrivateKey) SignMessage(random io.Reader, message []byte, opts crypto.SignerOpts) ([]byte, error) {
	return sk.Sign(random, message, opts)
}

// SignWithContext signs message with pure ML-DSA, hedged, with the given
// context string (at most 255 bytes). Composite ML-DSA uses it with the
// algorithm label as context.
func (sk *PrivateKey) SignWithContext(message, context []byte) ([]byte, error) {
	if len(context) > MaxContextSize {
		return nil, ErrContextTooLong
	}
	sig := make([]byte, sk.params.signatureSize)
	if err := sk.params.signTo(sk.key, message, context, sig); err != nil {
		return nil, fmt.Errorf("mldsa: signing: %w", err)
	}
	return sig, nil
}

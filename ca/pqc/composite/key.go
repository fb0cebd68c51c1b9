package composite

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/subtle"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"

	"github.com/meshca/meshca/ca/pqc/mldsa"
)

var (
	// ErrInvalidSignature: the composite signature does not verify. It is
	// always joined with ErrMLDSAComponent and/or ErrTraditionalComponent,
	// naming the half (or halves) that failed.
	ErrInvalidSignature = errors.New("composite: signature does not verify")
	// ErrMLDSAComponent marks a failed ML-DSA component.
	ErrMLDSAComponent = errors.New("ML-DSA component failed")
	// ErrTraditionalComponent marks a failed traditional component.
	ErrTraditionalComponent = errors.New("traditional component failed")
	// ErrMalformedSignature: the signature is too short to hold both halves.
	ErrMalformedSignature = errors.New("composite: malformed signature")
	// ErrUnsupportedSignerOpts: Sign takes the full message; opts must be
	// nil or crypto.Hash(0).
	ErrUnsupportedSignerOpts = errors.New("composite: SignerOpts must be crypto.Hash(0) (composite ML-DSA signs the full message)")
)

// PublicKey is a composite public key: the ML-DSA key and the traditional
// key of one Algorithm.
type PublicKey struct {
	alg     *Algorithm
	mldsa   *mldsa.PublicKey
	trad    crypto.PublicKey
	tradRaw []byte
}

// NewPublicKey splits and parses raw = mldsaPK || tradPK.
func NewPublicKey(alg *Algorithm, raw []byte) (*PublicKey, error) {
	if alg == nil {
		return nil, errors.New("composite: nil algorithm")
	}
	n := alg.mldsa.PublicKeySize()
	if len(raw) <= n {
		return nil, fmt.Errorf("%w: %s key is %d bytes, shorter than its %d-byte ML-DSA half", ErrMalformedPublicKey, alg.name, len(raw), n)
	}
	mpk, err := mldsa.NewPublicKey(alg.mldsa, raw[:n])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedPublicKey, err)
	}
	trad, err := alg.parseTraditionalPublicKey(raw[n:])
	if err != nil {
		return nil, err
	}
	return &PublicKey{alg: alg, mldsa: mpk, trad: trad, tradRaw: append([]byte(nil), raw[n:]...)}, nil
}

// Algorithm returns the key's composite algorithm.
func (pk *PublicKey) Algorithm() *Algorithm { return pk.alg }

// MLDSAPublicKey returns the ML-DSA component.
func (pk *PublicKey) MLDSAPublicKey() *mldsa.PublicKey { return pk.mldsa }

// TraditionalPublicKey returns the traditional component:
// *ecdsa.PublicKey (for brainpool, on a
// github.com/ProtonMail/go-crypto/brainpool curve), ed25519.PublicKey,
// circl's ed448.PublicKey or *rsa.PublicKey.
func (pk *PublicKey) TraditionalPublicKey() crypto.PublicKey { return pk.trad }

// Bytes returns mldsaPK || tradPK, the content of the SPKI BIT STRING.
func (pk *PublicKey) Bytes() []byte {
	return append(pk.mldsa.Bytes(), pk.tradRaw...)
}

// Equal reports whether x is the same composite public key.
func (pk *PublicKey) Equal(x crypto.PublicKey) bool {
	o, ok := x.(*PublicKey)
	return ok && o.alg == pk.alg && bytes.Equal(o.Bytes(), pk.Bytes())
}

// Verify checks a composite signature over message with an empty
// application context, as used in X.509.
func (pk *PublicKey) Verify(message, signature []byte) error {
	return pk.VerifyWithContext(message, nil, signature)
}

// VerifyWithContext checks a composite signature over message with the
// given application context. Both components are always checked; the
// error names each one that failed.
func (pk *PublicKey) VerifyWithContext(message, context, signature []byte) error {
	mPrime, err := pk.alg.MessageRepresentative(message, context)
	if err != nil {
		return err
	}
	n := pk.alg.mldsa.SignatureSize()
	if len(signature) <= n {
		return fmt.Errorf("%w: %s signature is %d bytes, need more than the %d-byte ML-DSA half", ErrMalformedSignature, pk.alg.name, len(signature), n)
	}
	var errs []error
	if err := pk.mldsa.VerifyWithContext(mPrime, []byte(pk.alg.Label()), signature[:n]); err != nil {
		errs = append(errs, fmt.Errorf("%w (%s): %v", ErrMLDSAComponent, pk.alg.mldsa.Name(), err))
	}
	if err := pk.alg.verifyTraditional(pk.trad, mPrime, signature[n:]); err != nil {
		errs = append(errs, fmt.Errorf("%w (%s): %v", ErrTraditionalComponent, pk.alg.trad, err))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s: %w", ErrInvalidSignature, pk.alg.name, errors.Join(errs...))
	}
	return nil
}

// PrivateKey is a composite private key for one of the ECDSA P-256
// algorithms meshca signs with. It implements crypto.Signer: Sign takes the
// full message (opts must be crypto.Hash(0)) and an empty context.
type PrivateKey struct {
	alg   *Algorithm
	mldsa *mldsa.PrivateKey
	ecdsa *ecdsa.PrivateKey
	pub   *PublicKey
}

// GenerateKey creates fresh, independent ML-DSA and ECDSA keys for alg
// (Default when nil), reading randomness from random (crypto/rand.Reader
// when nil).
func GenerateKey(alg *Algorithm, random io.Reader) (*PrivateKey, error) {
	if alg == nil {
		alg = Default
	}
	if !alg.signs {
		return nil, fmt.Errorf("%w (got %s)", ErrSigningUnsupported, alg.name)
	}
	if random == nil {
		random = rand.Reader
	}
	m, err := mldsa.GenerateKey(alg.mldsa, random)
	if err != nil {
		return nil, err
	}
	e, err := ecdsa.GenerateKey(alg.curve, random)
	if err != nil {
		return nil, fmt.Errorf("composite: generating ECDSA key: %w", err)
	}
	return newPrivateKey(alg, m, e)
}

func newPrivateKey(alg *Algorithm, m *mldsa.PrivateKey, e *ecdsa.PrivateKey) (*PrivateKey, error) {
	point, err := e.PublicKey.Bytes()
	if err != nil {
		return nil, fmt.Errorf("composite: encoding ECDSA public key: %w", err)
	}
	pub, err := NewPublicKey(alg, append(m.PublicKey().Bytes(), point...))
	if err != nil {
		return nil, err
	}
	return &PrivateKey{alg: alg, mldsa: m, ecdsa: e, pub: pub}, nil
}

// Algorithm returns the key's composite algorithm.
func (sk *PrivateKey) Algorithm() *Algorithm { return sk.alg }

// Public returns the *PublicKey; it implements crypto.Signer.
func (sk *PrivateKey) Public() crypto.PublicKey { return sk.pub }

// PublicKey returns the public half.
func (sk *PrivateKey) PublicKey() *PublicKey { return sk.pub }

// MLDSAPrivateKey returns the ML-DSA component (it keeps its seed).
func (sk *PrivateKey) MLDSAPrivateKey() *mldsa.PrivateKey { return sk.mldsa }

// Equal reports whether x is the same composite private key.
func (sk *PrivateKey) Equal(x crypto.PrivateKey) bool {
	o, ok := x.(*PrivateKey)
	if !ok || o.alg != sk.alg {
		return false
	}
	a, errA := sk.bytes()
	b, errB := o.bytes()
	return errA == nil && errB == nil && subtle.ConstantTimeCompare(a, b) == 1
}

// SignatureAlgorithm returns the composite OID with parameters absent, for
// the signature fields of certificates and CRLs this key signs.
func (sk *PrivateKey) SignatureAlgorithm() pkix.AlgorithmIdentifier {
	return sk.alg.AlgorithmIdentifier()
}

// Sign makes a composite signature over the full message with an empty
// application context. opts must be nil or crypto.Hash(0). random feeds
// the ECDSA half (crypto/rand.Reader when nil); the ML-DSA half is hedged
// with crypto/rand.
func (sk *PrivateKey) Sign(random io.Reader, message []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts != nil {
		if h, ok := opts.(crypto.Hash); !ok || h != 0 {
			return nil, fmt.Errorf("%w (got %T %v)", ErrUnsupportedSignerOpts, opts, opts.HashFunc())
		}
	}
	return sk.SignWithContext(random, message, nil)
}

// SignMessage is Sign; it makes PrivateKey a crypto.MessageSigner, so that
// crypto.SignMessage never pre-hashes for it.
func (sk *PrivateKey) SignMessage(random io.Reader, message []byte, opts crypto.SignerOpts) ([]byte, error) {
	return sk.Sign(random, message, opts)
}

// SignWithContext makes a composite signature over message with the given
// application context (at most 255 bytes):
// mldsaSig = ML-DSA.Sign(M', ctx=Label), ecdsaSig = ECDSA(hash(M')),
// signature = mldsaSig || DER(ecdsaSig).
func (sk *PrivateKey) SignWithContext(random io.Reader, message, context []byte) ([]byte, error) {
	if random == nil {
		random = rand.Reader
	}
	mPrime, err := sk.alg.MessageRepresentative(message, context)
	if err != nil {
		return nil, err
	}
	mSig, err := sk.mldsa.SignWithContext(mPrime, []byte(sk.alg.Label()))
	if err != nil {
		return nil, fmt.Errorf("composite: ML-DSA component: %w", err)
	}
	h := sk.alg.hash.New()
	h.Write(mPrime)
	eSig, err := ecdsa.SignASN1(random, sk.ecdsa, h.Sum(nil))
	if err != nil {
		return nil, fmt.Errorf("composite: ECDSA component: %w", err)
	}
	return append(mSig, eSig...), nil
}

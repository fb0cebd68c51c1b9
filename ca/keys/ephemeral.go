package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"

	"github.com/meshca/meshca/ca/pqc"
)

// Ephemeral generates a classical key of alg in memory only: it never
// reaches a key store. Throwaway checks (a trial intermediate under a new
// root) use it.
func Ephemeral(alg Algorithm) (crypto.Signer, error) {
	switch alg {
	case ECP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case ECP384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case RSA3072:
		return rsa.GenerateKey(rand.Reader, 3072)
	case Ed25519:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}
	return nil, fmt.Errorf("unsupported key algorithm %q (use one of %v)", alg, Algorithms)
}

// EphemeralPQ generates a post-quantum key of alg (one of PQAlgorithms)
// in memory only, like Ephemeral.
func EphemeralPQ(alg string) (PQSigner, error) {
	key, err := pqc.GenerateKey(alg, nil)
	if err != nil {
		return nil, err
	}
	s, ok := key.(PQSigner)
	if !ok {
		return nil, fmt.Errorf("%T is not a post-quantum signer", key)
	}
	return s, nil
}

package vault

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"time"

	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/root"
)

// SourceVault is the generation source to record for intermediates that
// Vault signed.
const SourceVault = "vault"

// IntermediateSigner is a root that signs meshca's intermediates remotely
// from a CSR. *Source implements it.
type IntermediateSigner interface {
	// SignIntermediate returns the signed, validated intermediate and the
	// certificates above it, ending with the root.
	SignIntermediate(ctx context.Context, csrDER []byte, commonName string, ttl time.Duration) (*x509.Certificate, []*x509.Certificate, error)
	// Roots returns the trust anchors.
	Roots(ctx context.Context) ([]*x509.Certificate, error)
}

// KeyCreator creates CA keys in meshca's key store; *keys.Manager
// implements it.
type KeyCreator interface {
	Create(name string, alg keys.Algorithm) (crypto.Signer, string, error)
}

// MintGeneration makes a new CA generation through src: it checks that src
// serves its roots (so that no key is created while it is down), creates
// the intermediate's key in the key store, sends only a CSR, and returns
// the bundle, the signer and the key reference to record (what
// authority.Loader.record needs, with source SourceVault).
func MintGeneration(ctx context.Context, src IntermediateSigner, km KeyCreator, alg keys.Algorithm, t root.IntermediateTemplate, now time.Time) (*root.Bundle, crypto.Signer, string, error) {
	roots, err := src.Roots(ctx)
	if err != nil {
		return nil, nil, "", err
	}
	signer, ref, err := km.Create("intermediate-"+now.UTC().Format("20060102T150405.000000000Z"), alg)
	if err != nil {
		return nil, nil, "", err
	}
	subject := pkix.Name{CommonName: t.CommonName}
	if t.Organization != "" {
		subject.Organization = []string{t.Organization}
	}
	csr, err := CSRForSubject(signer, subject)
	if err != nil {
		return nil, nil, "", err
	}
	cert, chain, err := src.SignIntermediate(ctx, csr, t.CommonName, t.Lifetime)
	if err != nil {
		return nil, nil, "", fmt.Errorf("%w (the unused key %s stays in the key store)", err, ref)
	}
	if err := root.CheckKeyMatches(cert, signer); err != nil {
		return nil, nil, "", fmt.Errorf("intermediate signed by the root source: %w", err)
	}
	inters, _ := root.SplitChain(chain)
	b := &root.Bundle{Cert: cert, Intermediates: inters, Roots: roots}
	if err := b.Verify(now); err != nil {
		return nil, nil, "", fmt.Errorf("intermediate signed by the root source does not verify to its roots: %w", err)
	}
	return b, signer, ref, nil
}

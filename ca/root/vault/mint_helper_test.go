package vault

import (
	"context"
	"crypto"
	"fmt"
	"time"

	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/root"
)

// mintGeneration makes a new intermediate through src as meshca's Loader
// does with any root.Source: Roots first (no key is created while the
// source is down), a key created in km, only a CSR sent, and the result
// checked against the key and the roots.
func mintGeneration(ctx context.Context, src root.Source, km *keys.Manager, alg keys.Algorithm, t root.IntermediateTemplate, now time.Time) (*root.Bundle, crypto.Signer, string, error) {
	if _, err := src.Roots(ctx); err != nil {
		return nil, nil, "", err
	}
	signer, ref, err := km.Create("intermediate-"+now.UTC().Format("20060102T150405.000000000Z"), alg)
	if err != nil {
		return nil, nil, "", err
	}
	req, err := root.NewIntermediateRequest(root.CAKey{Signer: signer}, t, now)
	if err != nil {
		return nil, nil, "", err
	}
	b, err := src.MintIntermediate(ctx, req)
	if err != nil {
		return nil, nil, "", fmt.Errorf("%w (the unused key %s stays in the key store)", err, ref)
	}
	if err := root.CheckKeyMatches(b.Cert, signer); err != nil {
		return nil, nil, "", err
	}
	if err := b.Verify(now); err != nil {
		return nil, nil, "", err
	}
	return b, signer, ref, nil
}

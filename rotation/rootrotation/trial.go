package rootrotation

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/profile"
	"github.com/meshca/meshca/ca/root"
)

// trialLifetime is the throwaway intermediate's lifetime: long enough to
// sign and verify its leaf, short so that a copy a root source keeps
// (Vault records what it signs) soon expires.
const trialLifetime = time.Hour

// trialMint has next, the new root's source, mint a throwaway intermediate
// of the configured profile for an ephemeral key held only in memory,
// checks that it chains to newRoot and signs a leaf that verifies under it
// (authority.Material.SelfTest, RFC 5280 section 6). Neither the key nor
// the intermediate reaches the key store or the store. A root that may
// issue no CA certificate (pathLenConstraint 0, RFC 5280 section 4.2.1.9),
// or a source that signs under another root, fails here.
func trialMint(ctx context.Context, next root.Source, newRoot *x509.Certificate, ic config.IntermediateConfig, now time.Time) error {
	p := ic.Profile
	if p == "" {
		p = profile.Classical
	}
	key, err := ephemeralCAKey(p, ic)
	if err != nil {
		return fmt.Errorf("throwaway key: %w", err)
	}
	cn := ic.CommonName
	if cn == "" {
		cn = "meshca root rotation trial"
	}
	req, err := root.NewIntermediateRequest(key, root.IntermediateTemplate{CommonName: cn, Organization: ic.Organization, Lifetime: trialLifetime}, now)
	if err != nil {
		return err
	}
	b, err := next.MintIntermediate(ctx, req)
	if err != nil {
		return fmt.Errorf("it could not mint a throwaway intermediate: %w", err)
	}
	if err := root.CheckKeyMatches(b.Cert, key.Signer); err != nil {
		return fmt.Errorf("the throwaway intermediate it minted: %w", err)
	}
	if err := b.Verify(now); err != nil {
		return fmt.Errorf("the throwaway intermediate it minted does not verify: %w", err)
	}
	if chain := b.Chain(); !chain[len(chain)-1].Equal(newRoot) {
		return fmt.Errorf("the throwaway intermediate it minted does not chain to the new root %s", newRoot.Subject)
	}
	if err := authority.CheckCatalystRoot(b, p); err != nil {
		return fmt.Errorf("the throwaway intermediate's alternative signature does not verify: %w", err)
	}
	mat, err := authority.NewMaterial(0, b, key, p)
	if err != nil {
		return fmt.Errorf("the throwaway intermediate: %w", err)
	}
	if err := mat.SelfTest(now); err != nil {
		return fmt.Errorf("under the throwaway intermediate: %w", err)
	}
	return nil
}

// ephemeralCAKey makes in memory the keys a CA of profile p holds: a
// classical key (classical), a classical and an ML-DSA key (catalyst), or
// one composite or ML-DSA key (composite, mldsa).
func ephemeralCAKey(p profile.Name, ic config.IntermediateConfig) (root.CAKey, error) {
	var key root.CAKey
	var err error
	switch p {
	case profile.Composite, profile.MLDSA:
		key.Signer, err = keys.EphemeralPQ(ic.PQAlgorithm)
		return key, err
	case profile.Catalyst:
		if key.Alt, err = keys.EphemeralPQ(ic.PQAlgorithm); err != nil {
			return key, err
		}
	}
	alg := ic.KeyAlgorithm
	if alg == "" {
		alg = keys.ECP256
	}
	key.Signer, err = keys.Ephemeral(alg)
	return key, err
}

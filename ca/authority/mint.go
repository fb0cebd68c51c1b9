package authority

import (
	"context"
	"crypto/x509"
	"fmt"
	"strings"

	"github.com/meshca/meshca/ca/pqc"
	"github.com/meshca/meshca/ca/profile"
	"github.com/meshca/meshca/ca/root"
)

// Mint has the root source mint a new intermediate for the configured
// profile, records it as a new generation, activates it and publishes its
// post-quantum trust anchor.
func (l *Loader) Mint(ctx context.Context) (*Material, error) {
	roots, err := l.Root.Roots(ctx)
	if err != nil {
		return nil, err
	}
	m, err := l.mint(ctx, roots)
	if err != nil {
		return nil, err
	}
	return m, l.publishPQAnchor(m)
}

// mint creates the intermediate's keys in the key store, has the root
// source sign them (only public keys and a CSR leave meshca), checks what
// it returns against the keys and roots (under a Catalyst root, the
// alternative signature too), then records and activates the generation.
func (l *Loader) mint(ctx context.Context, roots []*x509.Certificate) (*Material, error) {
	ic := l.Config.Intermediate
	p := l.profile()
	now := l.now()
	tmpl := root.IntermediateTemplate{CommonName: ic.CommonName, Organization: ic.Organization, Lifetime: ic.Lifetime.Duration}
	if !l.Root.Capabilities().Mint {
		// The source's own CannotMintError (errors.Is root.ErrCannotMint),
		// before any key is created.
		_, err := l.Root.MintIntermediate(ctx, root.IntermediateRequest{Template: tmpl, Now: now})
		if err == nil {
			err = &root.CannotMintError{Kind: l.Root.Kind(), Reason: "the root source cannot mint"}
		}
		return nil, err
	}
	name := "intermediate-" + now.UTC().Format("20060102T150405.000000000Z")
	key, ref, altRef, err := l.createCAKey(name, p)
	if err != nil {
		return nil, err
	}
	req, err := root.NewIntermediateRequest(key, tmpl, now)
	if err != nil {
		return nil, err
	}
	b, err := l.Root.MintIntermediate(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("%w (the unused key %s stays in the key store)", err, ref)
	}
	cert := b.Cert
	if err := root.CheckKeyMatches(cert, key.Signer); err != nil {
		return nil, fmt.Errorf("intermediate minted by the root source: %w", err)
	}
	if key.Alt != nil {
		if err := root.CheckAltKeyMatches(cert, key.Alt); err != nil {
			return nil, fmt.Errorf("intermediate minted by the root source: %w", err)
		}
	}
	if err := b.Verify(now); err != nil {
		return nil, fmt.Errorf("freshly minted intermediate does not verify: %w", err)
	}
	if p == profile.Catalyst && hasAltKey(roots[0]) {
		a, err := pqc.AnchorFromCertificate(roots[0])
		if err == nil {
			err = b.VerifyPQ(a)
		}
		if err != nil {
			return nil, fmt.Errorf("freshly minted intermediate's alternative signature does not verify: %w", err)
		}
	}
	g, err := l.record(ctx, b, ref, altRef, l.Root.Kind(), now)
	if err != nil {
		return nil, err
	}
	m, err := NewMaterial(g.ID, b, key, p)
	if err != nil {
		return nil, err
	}
	l.log().Info("minted intermediate", "generation", g.ID, "root_source", l.Root.Kind(), "subject", cert.Subject.String(),
		"not_after", cert.NotAfter, "profile", string(p), "key_algorithm", keyName(key.Signer.Public()),
		"pq_algorithm", pqAlgorithmOf(key, p), "key_ref", ref, "alt_key_ref", altRef,
		"pq_anchored_at_intermediate", m.PQAnchoredAtIntermediate())
	return m, nil
}

// createCAKey creates the keys a CA of profile p holds, in the key store:
// a classical key (classical), a classical and an ML-DSA key (catalyst),
// or one composite or ML-DSA key (composite, mldsa).
func (l *Loader) createCAKey(name string, p profile.Name) (key root.CAKey, ref, altRef string, err error) {
	ic := l.Config.Intermediate
	switch p {
	case profile.Composite, profile.MLDSA:
		key.Signer, ref, err = l.Keys.CreatePQ(name, ic.PQAlgorithm)
		return key, ref, "", err
	case profile.Catalyst:
		// The ML-DSA key first: a key store that cannot hold it fails
		// before anything is created.
		if key.Alt, altRef, err = l.Keys.CreatePQ(name+"-"+strings.ToLower(ic.PQAlgorithm), ic.PQAlgorithm); err != nil {
			return key, "", "", err
		}
	}
	key.Signer, ref, err = l.Keys.Create(name, ic.KeyAlgorithm)
	return key, ref, altRef, err
}

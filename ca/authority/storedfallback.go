package authority

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
)

// storedRootChecker is implemented by root sources that can be
// unavailable (*vault.Source): CheckStoredRoot says whether meshca may
// sign under a stored generation's root without asking the source (the
// pinned root fingerprint), and ExpectRoots tells the source which roots
// meshca signs under meanwhile, so that it reports another root once it
// answers.
type storedRootChecker interface {
	CheckStoredRoot(root *x509.Certificate) error
	ExpectRoots(roots []*x509.Certificate)
}

// loadStored is Load while the root source is unavailable (unavailable is
// why): it signs with the active generation the source minted, from the
// store, if it is valid now, its stored chain verifies to the root at its
// end (which the source accepts, e.g. the pinned root) and its key loads
// and matches. It never mints: without such a generation meshca has
// nothing to sign with and start-up fails. With threshold > 0, a
// generation past that fraction of its lifetime fails too.
func (l *Loader) loadStored(ctx context.Context, unavailable error, threshold float64) (*Material, error) {
	kind := l.Root.Kind()
	gens, err := l.Store.ListGenerations(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w; and the stored CA generations cannot be read: %w", unavailable, err)
	}
	var g *store.Generation
	for i := len(gens) - 1; i >= 0; i-- {
		if gens[i].Active() && gens[i].Source == kind && gens[i].Lineage() == l.Signer {
			g = &gens[i]
			break
		}
	}
	if g == nil {
		return nil, fmt.Errorf("%w; and there is no stored intermediate to fall back on (the store holds no active CA generation from root source %q), so meshca has nothing to sign with until it answers", unavailable, kind)
	}
	b, err := l.storedBundle(*g)
	if err == nil {
		var key root.CAKey
		if key, err = l.GenerationKey(*g, b.Cert); err == nil {
			var m *Material
			if m, err = NewMaterial(g.ID, b, key, ProfileOf(*g)); err == nil {
				// A revoked intermediate is no fallback: every leaf under
				// it fails path validation (RFC 5280 section 6.3).
				if err := l.checkNotRevoked(ctx, g.ID, b.Cert); err != nil {
					var u *UnusableError
					if errors.As(err, &u) {
						u.Msg = fmt.Sprintf("the root source is unavailable (%v) and %s", unavailable, u.Msg)
					}
					return nil, err
				}
				due := RenewalTime(b.Cert, l.Config.Intermediate.ActivateThreshold)
				pastDue := !l.Now().Before(due)
				if pastDue && threshold > 0 {
					return nil, &UnusableError{Msg: fmt.Sprintf("the root source is unavailable (%v) and the stored intermediate passed its activation threshold", unavailable), Generation: g.ID, Args: []any{"renewal_due", due}}
				}
				l.log().Warn("the root source is unavailable; signing with the stored intermediate it signed until it answers (no new intermediate is minted meanwhile)",
					"root_source", kind, "generation", g.ID, "not_after", b.Cert.NotAfter, "root", b.Roots[0].Subject.String(),
					"root_sha256", Fingerprint(b.Roots[0]), "error", unavailable)
				if pastDue {
					l.log().Warn("the stored intermediate is past its activation threshold; it is replaced once the root source answers", "generation", g.ID, "renewal_due", due)
				}
				if c, ok := l.Root.(storedRootChecker); ok {
					c.ExpectRoots(b.Roots)
				}
				return m, nil
			}
		}
	}
	return nil, fmt.Errorf("%w; and there is no stored intermediate to fall back on: the active CA generation %d from root source %q is not usable: %w", unavailable, g.ID, kind, err)
}

// storedBundle rebuilds a generation's bundle from the store alone: its
// certificate, the intermediates of its chain and the self-signed root
// that ends it, verified at now.
func (l *Loader) storedBundle(g store.Generation) (*root.Bundle, error) {
	cert, err := x509.ParseCertificate(g.CertDER)
	if err != nil {
		return nil, fmt.Errorf("stored certificate does not parse: %w", err)
	}
	var chain []*x509.Certificate
	for i, der := range g.ChainDER {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("stored chain certificate %d does not parse: %w", i, err)
		}
		chain = append(chain, c)
	}
	if len(chain) == 0 {
		return nil, fmt.Errorf("no chain is stored with it")
	}
	top := chain[len(chain)-1]
	inters, roots := root.SplitChain(chain)
	if len(roots) != 1 || !roots[0].Equal(top) {
		return nil, fmt.Errorf("its stored chain does not end at a self-signed root (it ends at %q)", top.Subject)
	}
	if c, ok := l.Root.(storedRootChecker); ok {
		if err := c.CheckStoredRoot(top); err != nil {
			return nil, err
		}
	}
	b := &root.Bundle{Cert: cert, Intermediates: inters, Roots: roots}
	if err := b.Verify(l.Now()); err != nil {
		return nil, fmt.Errorf("it does not verify to its stored root now: %w", err)
	}
	return b, nil
}

package intermediate

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
)

// retainedGen is a retired generation that is still published: until its
// last leaf has expired plus intermediate.gracePeriod.
type retainedGen struct {
	mat   *authority.Material
	g     store.Generation
	until time.Time
}

func (m *Manager) retainedMaterial() []*authority.Material {
	out := make([]*authority.Material, 0, len(m.retained))
	for _, r := range m.retained {
		out = append(out, r.mat)
	}
	return out
}

// retainedUntil is when a retired generation leaves the published set:
// the expiry of its last leaf (from the issuance index; its retirement
// when it signed none), bounded by its own expiry (RFC 5280 section
// 4.1.2.5: no leaf it signed outlives it), plus the grace period.
func (m *Manager) retainedUntil(ctx context.Context, g store.Generation, mat *authority.Material) time.Time {
	last := g.RetiredAt
	err := m.st.ListIssuancesByGeneration(ctx, g.ID, func(r store.Issuance) bool {
		if r.NotAfter.After(last) {
			last = r.NotAfter
		}
		return true
	})
	if err != nil {
		m.log.Warn("cannot read the leaves of a retired CA generation; keeping it until it expires", "generation", g.ID, "error", err)
		last = mat.Bundle.Cert.NotAfter
	}
	if na := mat.Bundle.Cert.NotAfter; last.After(na) {
		last = na
	}
	return last.Add(m.cfg.Intermediate.GracePeriod.Duration)
}

// retire adds the generation that was just retired to the retained set.
func (m *Manager) retire(ctx context.Context, prev *authority.Material, at time.Time) {
	g := store.Generation{ID: prev.Generation, RetiredAt: at}
	m.retained = append(m.retained, retainedGen{mat: prev, g: g, until: m.retainedUntil(ctx, g, prev)})
}

// loadRetained fills the retained set from the journal at start-up, and
// the time of the last activation.
func (m *Manager) loadRetained(ctx context.Context) error {
	gens, err := m.st.ListGenerations(ctx)
	if err != nil {
		return err
	}
	now := m.clk.Now()
	roots := m.active.Bundle.Roots
	m.retained = nil
	for _, g := range gens {
		if g.ID == m.active.Generation {
			m.lastOK = g.ActivatedAt
		}
		if g.State() != store.StateRetired || g.Source != m.src.Kind() || g.Lineage() != m.loader.Signer {
			continue
		}
		cert := certNotAfter(g)
		if cert.IsZero() || !now.Before(cert.Add(m.cfg.Intermediate.GracePeriod.Duration)) {
			continue
		}
		mat, err := m.retainedMaterialOf(g, roots)
		if err != nil {
			m.log.Warn("a retired CA generation in its grace period does not load; it is not published", "generation", g.ID, "error", err)
			continue
		}
		if until := m.retainedUntil(ctx, g, mat); now.Before(until) {
			m.retained = append(m.retained, retainedGen{mat: mat, g: g, until: until})
		}
	}
	return nil
}

// retainedMaterialOf loads the retired generation g under the roots in
// force or, when it chains to none of them, under the root its stored
// chain ends at: after a root rotation removed the old root, a generation
// it issued is still retained while its leaves are in use, so that the
// CRL it signs for them stays served (RFC 5280 section 5). The stored
// chain is meshca's own journal, checked when the generation was minted;
// the chain must still verify under that root now.
func (m *Manager) retainedMaterialOf(g store.Generation, roots []*x509.Certificate) (*authority.Material, error) {
	mat, err := m.loader.RetainedMaterial(g, roots)
	if err == nil {
		return mat, nil
	}
	own := storedRoots(g)
	if len(own) == 0 || slices.ContainsFunc(own, func(r *x509.Certificate) bool { return slices.ContainsFunc(roots, r.Equal) }) {
		return nil, err
	}
	mat, ownErr := m.loader.RetainedMaterial(g, own)
	if ownErr != nil {
		return nil, errors.Join(err, fmt.Errorf("under the root of its stored chain: %w", ownErr))
	}
	m.log.Info("a retired CA generation in its grace period was issued by a root no longer in force (a root rotation removed it); it is retained under that root so that its CRL stays served",
		"generation", g.ID, "root", own[0].Subject.String())
	return mat, nil
}

// storedRoots are the self-signed roots of g's stored chain.
func storedRoots(g store.Generation) []*x509.Certificate {
	var certs []*x509.Certificate
	for _, der := range g.ChainDER {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil
		}
		certs = append(certs, c)
	}
	_, roots := root.SplitChain(certs)
	return roots
}

// expireRetained drops the retained generations whose grace period has
// ended at now (re-reading their last leaf first: leaves signed while the
// activation was being applied count too). It reports whether any was
// dropped.
func (m *Manager) expireRetained(ctx context.Context, now time.Time) bool {
	kept := m.retained[:0]
	dropped := false
	for _, r := range m.retained {
		if !now.Before(r.until) {
			r.until = m.retainedUntil(ctx, r.g, r.mat)
		}
		if now.Before(r.until) {
			kept = append(kept, r)
			continue
		}
		dropped = true
		m.log.Info("a retired intermediate left its grace period and is no longer published", "generation", r.mat.Generation)
	}
	m.retained = kept
	return dropped
}

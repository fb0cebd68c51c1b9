package intermediate

import (
	"context"
	"time"

	"github.com/meshca/meshca/ca/authority"
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
		if g.State() != store.StateRetired || g.Source != m.src.Kind() {
			continue
		}
		cert := certNotAfter(g)
		if cert.IsZero() || !now.Before(cert.Add(m.cfg.Intermediate.GracePeriod.Duration)) {
			continue
		}
		mat, err := m.loader.RetainedMaterial(g, roots)
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

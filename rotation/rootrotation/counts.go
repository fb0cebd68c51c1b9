package rootrotation

import (
	"context"
	"crypto/x509"
	"time"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/store"
)

// workloadCount is what phase 2 measures from the issuance records.
type workloadCount struct {
	// before of total unexpired workload certificates were issued before
	// both roots were published.
	before, total int
	// stale of identities workload identities hold unexpired certificates
	// but got none since both roots were published: none of their
	// workloads has renewed, so none holds the new root. (A workload whose
	// identity another, renewed, workload shares cannot be told apart in
	// the records: the certificate count covers it, the identity count
	// does not.)
	stale, identities int
}

// revokedSet is what the store records as revoked: leaf serials, and
// generations whose intermediate is revoked (all their leaves with it).
type revokedSet struct {
	serials map[string]bool
	gens    map[uint64]bool
}

// revoked reads the revocations once for a count: a revoked certificate
// is no workload's to wait for, since relying parties that check the
// CRLs (Istio's ca-crl.pem) refuse it already, and none does after the
// old root is gone. A store without revocations has none.
func (c *Controller) revoked(ctx context.Context) (revokedSet, error) {
	set := revokedSet{serials: map[string]bool{}, gens: map[uint64]bool{}}
	revs, ok := c.o.Store.(interface {
		ListRevocations(ctx context.Context, since uint64, fn func(store.Revocation) bool) error
	})
	if !ok {
		return set, nil
	}
	err := revs.ListRevocations(ctx, 0, func(r store.Revocation) bool {
		if r.Kind == store.KindIntermediate {
			set.gens[r.Generation] = true
		} else {
			set.serials[r.Serial] = true
		}
		return ctx.Err() == nil
	})
	if err == nil {
		err = ctx.Err()
	}
	return set, err
}

// has reports whether rec is revoked, itself or through its generation.
func (s revokedSet) has(rec store.Issuance) bool {
	return s.serials[rec.Serial] || s.gens[rec.Generation]
}

// countBefore counts, among the unexpired and unrevoked workload
// certificates, those issued before cutoff, and the identities that got
// none after it.
func (c *Controller) countBefore(ctx context.Context, cutoff, now time.Time) (workloadCount, error) {
	var n workloadCount
	revoked, err := c.revoked(ctx)
	if err != nil {
		return n, err
	}
	renewed := map[string]bool{}
	err = c.o.Store.ListIssuances(ctx, func(rec store.Issuance) bool {
		// meshca's own serving certificate is no workload's: it moves to
		// the new intermediate at the switch.
		if !rec.NotAfter.After(now) || rec.Profile == authority.ProfileServing || revoked.has(rec) {
			return true
		}
		n.total++
		// Issued at the instant the roots were published may not carry them.
		after := rec.IssuedAt.After(cutoff)
		if !after {
			n.before++
		}
		renewed[rec.Identity] = renewed[rec.Identity] || after
		return ctx.Err() == nil
	})
	if err == nil {
		err = ctx.Err()
	}
	n.identities = len(renewed)
	for _, r := range renewed {
		if !r {
			n.stale++
		}
	}
	return n, err
}

// countUnderOld counts the unexpired, unrevoked leaves of generations
// whose intermediate A signed.
func (c *Controller) countUnderOld(ctx context.Context, now time.Time) (int, error) {
	gens, err := c.o.Store.ListGenerations(ctx)
	if err != nil {
		return 0, err
	}
	revoked, err := c.revoked(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, g := range gens {
		cert, err := x509.ParseCertificate(g.CertDER)
		if err != nil || !issuedBy(cert, c.oldRoots) || !cert.NotAfter.After(now) || revoked.gens[g.ID] {
			continue
		}
		if err := c.o.Store.ListIssuancesByGeneration(ctx, g.ID, func(rec store.Issuance) bool {
			if rec.NotAfter.After(now) && rec.Profile != authority.ProfileServing && !revoked.has(rec) {
				n++
			}
			return ctx.Err() == nil
		}); err != nil {
			return 0, err
		}
	}
	return n, ctx.Err()
}

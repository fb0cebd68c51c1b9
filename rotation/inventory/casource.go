package inventory

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"k8s.io/utils/clock"

	"github.com/meshca/meshca/ca/store"
)

// CASource reports meshca's own CA material: the roots it publishes and
// every intermediate generation that is still published, the active one
// and each retired one whose leaves may still be in use (its certificate
// unexpired and at most Grace since it was retired).
type CASource struct {
	// Roots returns the roots meshca publishes now (root-cert.pem).
	Roots func() []*x509.Certificate
	// Active returns the active generation's ID.
	Active func() uint64
	// Generations lists the generations (a small, local read).
	Generations interface {
		ListGenerations(ctx context.Context) ([]store.Generation, error)
	}
	// Grace is how long a retired generation stays published: the longest
	// workload certificate TTL (issuance.maxCertTTL).
	Grace time.Duration
	// Clock is the wall clock (nil: the real one).
	Clock clock.PassiveClock
}

// Name implements Source.
func (s *CASource) Name() string { return "ca" }

// Certificates implements Source.
func (s *CASource) Certificates(ctx context.Context) ([]Certificate, error) {
	var out []Certificate
	for _, r := range s.Roots() {
		out = append(out, Certificate{Kind: KindRoot, Name: store.ScopeRoot, Cert: r})
	}
	gens, err := s.Generations.ListGenerations(ctx)
	if err != nil {
		return out, fmt.Errorf("read CA generations: %w", err)
	}
	now := s.now()
	active := s.Active()
	var errs []error
	for _, g := range gens {
		// Another signer lineage's active intermediate is in use too.
		inUse := g.Active() && g.Lineage() != store.DefaultSigner
		if g.ID != active && !inUse && (g.ActivatedAt.IsZero() || now.After(g.RetiredAt.Add(s.Grace))) {
			continue // never activated, or its last leaf has expired
		}
		c, err := x509.ParseCertificate(g.CertDER)
		if err != nil {
			errs = append(errs, fmt.Errorf("generation %d: %w", g.ID, err))
			continue
		}
		if g.ID != active && now.After(c.NotAfter) {
			continue // a retired CA past its notAfter vouches for no valid leaf
		}
		out = append(out, Certificate{Kind: KindIntermediate, Name: store.GenerationScope(g.ID), Cert: c})
	}
	return out, errors.Join(errs...)
}

func (s *CASource) now() time.Time {
	if s.Clock == nil {
		return time.Now()
	}
	return s.Clock.Now()
}

package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/crl"
	"github.com/meshca/meshca/issuer/istio"
	"github.com/meshca/meshca/rotation"
	"github.com/meshca/meshca/rotation/intermediate"
)

// signerLineage is a signer with its own intermediate
// (authentication.certSigners[].intermediate.separate): the manager that
// rotates its intermediate and the Authority that signs with it. A
// plug-in cluster's intermediate (clusterswire.go) is a lineage without
// an Authority: its cluster's istiod signs with it.
type signerLineage struct {
	name string
	m    *intermediate.Manager
	a    *authority.Authority
}

// signerLineages are the separate signers of a serve run, in the order of
// authentication.certSigners.
type signerLineages []*signerLineage

// openSignerLineages starts the intermediate manager of every signer with
// its own intermediate on the runtime's store, key store and root source
// (the root rotation's composite source, so that it mints under the
// minting root), resuming its journal or minting its first intermediate,
// and builds its Authority. The root rotation publishes each one's roots
// and switches it to a new root after the default signer; the rotation
// metrics and meshca status report each one as ca="intermediate:<name>".
// Call it before the CRL manager starts, so that every lineage's CRL is
// built from the start.
func openSignerLineages(ctx context.Context, cfg *config.Config, rt *authority.Runtime, rot *rotating, log *slog.Logger, reg prometheus.Registerer) (signerLineages, error) {
	var out signerLineages
	for _, s := range cfg.Authentication.CertSigners {
		ic, ok := cfg.SeparateIntermediate(s)
		if !ok {
			continue
		}
		if rt.Authority.Material().PQAnchoredAtIntermediate() {
			// Every lineage shares the roots; a post-quantum anchor at an
			// intermediate would need pq-anchor.pem to carry one per signer.
			return nil, fmt.Errorf("authentication.certSigners %s: intermediate.separate needs a root that carries the post-quantum trust anchor, but the roots have no ML-DSA key, so pq-anchor.pem holds the default intermediate's own key and would not verify this signer's leaves: give the root an ML-DSA key (root.file.rootPQKey), set intermediate.profile: classical, or remove intermediate.separate", s.Name)
		}
		scfg := *cfg
		scfg.Intermediate = ic
		o := intermediate.Options{Config: &scfg, Keys: rt.Keys, Store: rt.Store, Root: rt.Root,
			Signer: s.Name, Log: log.With("signer", s.Name)}
		if rot.single != nil {
			o.Leader, o.FollowInterval = rot.single.leading(), rot.single.follow
		}
		m := intermediate.New(o)
		mat, err := m.Start(ctx)
		if err != nil {
			return nil, fmt.Errorf("authentication.certSigners %s: its own intermediate: %w", s.Name, err)
		}
		pol, err := authority.CertSignerPolicy(cfg, s)
		if err != nil {
			return nil, fmt.Errorf("authentication.certSigners %s: %w", s.Name, err)
		}
		if reg != nil {
			if err := rotation.RegisterMetrics(reg, m); err != nil {
				return nil, err
			}
		}
		rot.root.AddLineage(s.Name, m)
		out = append(out, &signerLineage{name: s.Name, m: m, a: rt.Authority.ForSigner(mat, pol)})
		log.Info("signer with its own intermediate", "signer", s.Name, "generation", mat.Generation,
			"subject", mat.Bundle.Cert.Subject.String(), "not_after", mat.Bundle.Cert.NotAfter)
	}
	return out, nil
}

// orphanIssuers are the CRL issuers of generations of signer lineages that
// are no longer configured (a signer removed, or its intermediate.separate
// turned off) while their leaves may still be in use (rt.SigningCAs): no
// manager reports them any more, yet their CRLs must stay served and in
// ca-crl.pem until the next start finds their leaves expired (RFC 5280
// section 5: a relying party needs a CRL from each CA of a chain).
func (ls signerLineages) orphanIssuers(ctx context.Context, rt *authority.Runtime, log *slog.Logger) ([]crl.Issuer, error) {
	cas, err := rt.SigningCAs(ctx, time.Now())
	if err != nil {
		return nil, err
	}
	var out []crl.Issuer
	for _, c := range cas {
		if c.Root || c.Signer == store.DefaultSigner || slices.ContainsFunc(ls, func(l *signerLineage) bool { return l.name == c.Signer }) {
			continue
		}
		log.Warn("a CA generation of a signer that no longer has its own intermediate may still have leaves in use; its CRL stays published",
			"signer", c.Signer, "generation", c.Generation, "not_after", c.Cert.NotAfter)
		out = append(out, crlIssuerOf(c))
	}
	return out, nil
}

// engines gives each separate signer of signers its Authority.
func (ls signerLineages) engines(signers []istio.CertSigner) {
	for _, l := range ls {
		for i := range signers {
			if signers[i].Name == l.name {
				signers[i].Engine = l.a
			}
		}
	}
}

// trust is what client-certificate authentication verifies against: the
// default signer's roots and every lineage's intermediates, so that a
// workload renews with a certificate from any signer.
func (ls signerLineages) trust(def *authority.Authority) *authority.TrustUnion {
	as := []*authority.Authority{def}
	for _, l := range ls {
		// A plug-in cluster's intermediate is not trusted for client
		// certificates: its key is in that cluster's cacerts Secret, and
		// whoever reads it there must not renew as any mesh identity here.
		if l.a != nil {
			as = append(as, l.a)
		}
	}
	return authority.NewTrustUnion(as...)
}

// reporters are the lineages' intermediate rotations.
func (ls signerLineages) reporters() []rotation.Reporter {
	var out []rotation.Reporter
	for _, l := range ls {
		out = append(out, l.m)
	}
	return out
}

// activeScopes are the CRL scopes (store.GenerationScope) of every
// lineage's active generation.
func (ls signerLineages) activeScopes() []string {
	var out []string
	for _, l := range ls {
		if a := l.m.Active(); a != nil {
			out = append(out, store.GenerationScope(a.Generation))
		}
	}
	return out
}

// subscribe connects each lineage's rotation to serve: its Authority
// signs with the new intermediate, and the CRL manager builds the CRLs of
// every lineage (setCRLIssuers). The trust publisher, the serving
// certificate and pq-anchor.pem follow the default signer only: cacerts
// carries the default intermediate (Istio's plug-in CA has one), and a
// separate signer shares the roots. Call it before run.
func (ls signerLineages) subscribe(f *fanout) {
	for _, l := range ls {
		l.m.Subscribe(func(_ context.Context, c rotation.Change) error {
			if l.a != nil && l.a.Material() != c.Active {
				l.a.SetMaterial(c.Active)
			}
			return nil
		})
		l.m.Subscribe(func(ctx context.Context, c rotation.Change) error { return f.setCRLIssuersOf(ctx, l.name, c) })
	}
}

// run runs every lineage's rotation until ctx ends.
func (ls signerLineages) run(ctx context.Context) {
	for _, l := range ls {
		go l.m.Run(ctx)
	}
}

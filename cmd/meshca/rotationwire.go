package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/crl"
	"github.com/meshca/meshca/issuer/tlsconfig"
	"github.com/meshca/meshca/rotation"
	"github.com/meshca/meshca/rotation/intermediate"
	"github.com/meshca/meshca/rotation/rootrotation"
)

// openCA opens the CA for serve: the intermediate rotation manager
// resumes its journal and decides (minting and activating when needed)
// the active generation.
func openCA(ctx context.Context, cfg *config.Config, log *slog.Logger, reg prometheus.Registerer, opts ...func(*rootrotation.Options)) (*authority.Runtime, *rotating, error) {
	rt, r, err := openRotating(ctx, cfg, log, reg, opts...)
	if err != nil {
		return nil, nil, err
	}
	if reg != nil {
		if err := rotation.RegisterMetrics(reg, r.m); err != nil {
			rt.Close()
			return nil, nil, err
		}
	}
	return rt, r, nil
}

// fanout is everything in serve that hands out or checks CA material and
// must move when the signing intermediate or the roots change: the Istio
// endpoint's chain and the client-certificate authenticator (both read
// the Authority's material on every request), the CRL issuers and
// ca-crl.pem, the trust publisher (cacerts, ConfigMaps,
// ClusterTrustBundles), the serving certificate of the gRPC and admin TCP
// ports, and pq-anchor.pem.
type fanout struct {
	authority *authority.Authority
	// crls is nil when no CRL manager runs.
	crls *crl.Manager
	// rootSource is the root source in force; meshca signs the CRL of
	// every root of it whose key it holds (root.HeldRoots).
	rootSource root.Source
	// trust is nil without trustBundle.enabled.
	trust   *trustPublisher
	serving *tlsconfig.ServingCert
	// anchorPath is pq-anchor.pem (authority.PQAnchorPath).
	anchorPath string
	log        *slog.Logger
	// def is the default signer's intermediate manager and lineages the
	// signers with their own intermediate: the CRL manager builds the
	// CRLs of every lineage (nil def: the authority's material alone).
	def      *intermediate.Manager
	lineages signerLineages
	// orphans are the CRL issuers of lineages no longer configured
	// (signerLineages.orphanIssuers), kept until the next start.
	orphans []crl.Issuer
	// crlMu orders the CRL issuer updates of the lineages' changes, so
	// that the last one applied is built from every lineage's latest
	// material (each manager publishes its material before it notifies).
	crlMu sync.Mutex
}

// subscribers are the fan-out's rotation.Subscribers in the order the
// rotating controllers call them: signing first (the Istio endpoint
// returns the new chain from the next request; the authenticator's pools
// follow), then the CRLs, so that ca-crl.pem covers the new chain before
// the cacerts Secret names it, then trust distribution, the serving
// certificate and pq-anchor.pem.
func (f *fanout) subscribers() []rotation.Subscriber {
	return []rotation.Subscriber{f.setSigning, f.setCRLIssuers, f.setTrust, f.setServing, f.setPQAnchor}
}

// subscribeRotation is the one place where serve subscribes to the
// intermediate rotation: every rotation.Change (an activation, new roots,
// a retired generation leaving its grace period) reaches the fan-out's
// subscribers, in order. Call it before m.Run. Until the first change
// the CRL manager keeps the issuers it started with (the store's
// generations whose leaves may be in use, authority.Runtime.SigningCAs).
func subscribeRotation(_ context.Context, m *intermediate.Manager, f *fanout) {
	for _, s := range f.subscribers() {
		m.Subscribe(s)
	}
}

// setSigning switches signing to the active material: the Istio
// endpoint's response chain, and the roots and intermediates the
// client-certificate authenticator verifies against (it also keeps the
// retained generations' intermediates, from the store, until they expire).
func (f *fanout) setSigning(_ context.Context, c rotation.Change) error {
	if f.authority.Material() != c.Active {
		f.authority.SetMaterial(c.Active)
	}
	return nil
}

// setCRLIssuers makes the CRL manager build and serve the CRLs of the
// active generation, of every retained one (their leaves are still in
// use, RFC 5280 section 5) and of the root when meshca holds its key,
// against the new cert-chain.pem.
func (f *fanout) setCRLIssuers(ctx context.Context, c rotation.Change) error {
	return f.setCRLIssuersOf(ctx, store.DefaultSigner, c)
}

// setCRLIssuersOf is setCRLIssuers for a change c of signer's lineage:
// the CRLs of every lineage, c's and each other one's current material.
func (f *fanout) setCRLIssuersOf(ctx context.Context, signer string, c rotation.Change) error {
	if f.crls == nil {
		return nil
	}
	f.crlMu.Lock()
	defer f.crlMu.Unlock()
	changes := []rotation.Change{c}
	switch {
	case signer != store.DefaultSigner && f.def != nil:
		changes[0] = rotation.Change{Active: f.def.Active(), Retained: f.def.Retained()}
	case signer != store.DefaultSigner:
		changes[0] = rotation.Change{Active: f.authority.Material()}
	}
	for _, l := range f.lineages {
		if l.name == signer {
			changes = append(changes, c)
		} else {
			changes = append(changes, rotation.Change{Active: l.m.Active(), Retained: l.m.Retained()})
		}
	}
	issuers, err := crlIssuers(changes, f.orphans, f.rootSource)
	if err != nil {
		return err
	}
	if err := f.crls.SetIssuers(ctx, issuers, changes[0].Active.Bundle.Chain()); err != nil {
		return fmt.Errorf("CRL issuers: %w", err)
	}
	return nil
}

// crlIssuers are the CRL issuers of the lineages' changes (the default
// signer's first), in the order of ca-crl.pem: each lineage's active
// generation and its retained ones newest first, then the orphans, then
// every root in
// force whose key src holds, the minting one first (root.HeldRoots:
// during a root rotation the old and the new root each sign the CRL of
// the intermediates they issued, RFC 5280 section 5).
func crlIssuers(changes []rotation.Change, orphans []crl.Issuer, src root.Source) ([]crl.Issuer, error) {
	gen := func(m *authority.Material) crl.Issuer {
		return crl.Issuer{Scope: crl.ScopeGeneration(m.Generation), Generation: m.Generation, Cert: m.Bundle.Cert,
			Signer: crl.Signer{Key: m.Signer, Alt: m.AltSigner}}
	}
	var out []crl.Issuer
	for _, c := range changes {
		out = append(out, gen(c.Active))
		for i := len(c.Retained) - 1; i >= 0; i-- {
			if m := c.Retained[i]; m.Generation != c.Active.Generation {
				out = append(out, gen(m))
			}
		}
	}
	out = append(out, orphans...)
	held, err := root.HeldRoots(src)
	if err != nil {
		return nil, fmt.Errorf("CRL issuers: %w", err)
	}
	return append(out, crl.RootIssuers(held)...), nil
}

// setTrust publishes the active material (trustPublisher.setMaterial).
func (f *fanout) setTrust(ctx context.Context, c rotation.Change) error {
	return f.trust.setMaterial(ctx, c.Active)
}

// setServing reissues the serving certificate under a new intermediate.
// New roots alone change nothing in it: its chain stops below the root.
func (f *fanout) setServing(ctx context.Context, c rotation.Change) error {
	if f.serving == nil {
		return nil
	}
	return f.serving.Reissue(ctx)
}

// setPQAnchor rewrites pq-anchor.pem: anchored at meshca's intermediate
// (a classical enterprise root) it changes with every intermediate, and
// with the roots otherwise.
func (f *fanout) setPQAnchor(_ context.Context, c rotation.Change) error {
	return authority.PublishPQAnchor(f.anchorPath, c.Active, f.log)
}

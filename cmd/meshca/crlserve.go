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
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/crl"
)

// crlIssuerOf is the CRL issuer of a CA whose CRL meshca signs.
func crlIssuerOf(c authority.SigningCA) crl.Issuer {
	i := crl.Issuer{Scope: crl.ScopeGeneration(c.Generation), Generation: c.Generation, Cert: c.Cert, Signer: crl.Signer{Key: c.Key, Alt: c.Alt}}
	if c.Root {
		i.Scope = crl.RootScope(c.Cert, c.Minting)
	}
	return i
}

// newCRLManager builds every CRL meshca controls (crl.Manager.Start, which
// also repairs a crash between a revocation and its publication) and hands
// ca-crl.pem to publish. The root's CRL comes from meshca's root key, from
// the root source (Vault), or from crl.rootCRL; background readers of the latter stop with ctx.
func newCRLManager(ctx context.Context, cfg *config.Config, rt *authority.Runtime, publish func(context.Context, []byte) error, log *slog.Logger, reg prometheus.Registerer) (*crl.Manager, error) {
	cas, err := rt.SigningCAs(ctx, time.Now())
	if err != nil {
		return nil, fmt.Errorf("crl: %w", err)
	}
	issuers := make([]crl.Issuer, 0, len(cas))
	for _, c := range cas {
		issuers = append(issuers, crlIssuerOf(c))
	}
	chain := rt.CertChain()
	var ext crl.RootCRLSource
	switch rc := cfg.CRL.RootCRL; {
	case rt.Root.Capabilities().RootCRL:
		// A Vault root (rotations are between two Vault roots or two file
		// roots): during a rotation, rt.Root is the rotation's source, a
		// root.CRLSet, and the CRLs of both roots in force are published.
		ext = rt.Root
	case rc.File != "" || rc.URL != "":
		src := &crl.FileRootCRL{File: rc.File, URL: rc.URL, Root: chain[len(chain)-1], Refresh: rc.Refresh.Duration, Log: log,
			Memory: root.NewCRLMemory(rt.Store)}
		if err := src.Load(ctx); err != nil {
			// Not fatal: the CRL kept in the store, if still valid, is
			// published; without one ca-crl.pem waits for it
			// (meshca_crl_incomplete).
			log.Error("cannot read the root CRL; retrying every crl.rootCRL.refresh", "error", err, "refresh", rc.Refresh.Duration)
		}
		go src.Run(ctx)
		ext = src
	}
	m, err := crl.NewManager(crl.Options{
		Store: rt.Store, Issuers: issuers, Chain: chain, External: ext,
		Validity: cfg.CRL.Validity.Duration, Republish: cfg.CRL.RepublishInterval.Duration,
		Coalesce: cfg.CRL.CoalesceWindowOrDefault(), URL: cfg.CRL.BaseURL(),
		Publish: publish, Running: runningLineages(cfg), Log: log, Registerer: reg,
	})
	if err != nil {
		return nil, err
	}
	if err := m.Start(ctx); err != nil {
		return nil, fmt.Errorf("crl: %w", err)
	}
	return m, nil
}

// runningLineages is crl.Options.Running for cfg: the lineages it
// configures beside the default signer's.
func runningLineages(cfg *config.Config) func(lineage string) bool {
	ls := cfg.SeparateLineages()
	return func(lineage string) bool { return slices.Contains(ls, lineage) }
}

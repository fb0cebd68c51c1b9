package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/identity"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/issuer/bundleendpoint"
	"github.com/meshca/meshca/issuer/tlsconfig"
)

// startBundleEndpoint serves the trust domain's SPIFFE bundle on
// bundleEndpoint.address when it is set: the roots of the active material
// (those the trust publisher gives Istio, both during a root rotation),
// numbered through the store by the Lease holder; every replica serves
// the bundle the store holds, so that all serve one bundle and one
// spiffe_sequence. It runs until ctx ends or the
// returned stop is called; stop waits for the server to shut down.
func startBundleEndpoint(ctx context.Context, cfg *config.Config, rt *authority.Runtime, single *singletons, log *slog.Logger, reg prometheus.Registerer) (stop func(), err error) {
	if !cfg.BundleEndpoint.Enabled() {
		return func() {}, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		if err != nil {
			cancel()
		}
	}()
	done, err := runBundleEndpoint(ctx, cfg, rt, single, log, reg)
	if err != nil {
		return nil, err
	}
	return func() {
		cancel()
		<-done
	}, nil
}

// runBundleEndpoint starts the parts of the endpoint; done closes once
// its server has stopped.
func runBundleEndpoint(ctx context.Context, cfg *config.Config, rt *authority.Runtime, single *singletons, log *slog.Logger, reg prometheus.Registerer) (done chan struct{}, err error) {
	bc := cfg.BundleEndpoint
	seqs, ok := rt.Store.(store.BundleSequences)
	if !ok {
		return nil, fmt.Errorf("bundleEndpoint: the %s store keeps no bundle sequences", cfg.Store.Describe())
	}
	td, err := identity.TrustDomain(cfg.TrustDomain)
	if err != nil {
		return nil, fmt.Errorf("bundleEndpoint: %w", err)
	}
	mode, err := tlsconfig.ParseMode(cfg.Server.Compliance)
	if err != nil {
		return nil, fmt.Errorf("bundleEndpoint: %w", err)
	}
	log = log.With("component", "bundle-endpoint")
	b, err := bundleendpoint.New(bundleendpoint.Options{
		TrustDomain: td, Sequences: seqs, RefreshHint: bc.RefreshHint.Duration, Log: log,
		// With several replicas the Lease holder numbers the bundle and the
		// others serve it from the store.
		Leading: single.leads(),
		Roots: func() []*x509.Certificate {
			if m := rt.Authority.Material(); m != nil {
				return m.Bundle.Roots
			}
			return nil
		},
	})
	if err != nil {
		return nil, err
	}
	if err := b.Register(reg); err != nil {
		return nil, err
	}
	if err := b.Start(ctx); err != nil {
		return nil, fmt.Errorf("bundleEndpoint: %w", err)
	}
	o := bundleendpoint.ServerOptions{Listen: bc.Address, Handler: b.Handler(bc.Path), Mode: mode, MaxConnections: bc.MaxConnections, Log: log}
	switch bc.Profile {
	case config.BundleProfileWeb:
		fc := &bundleendpoint.FileCertificate{CertFile: bc.Web.CertFile, KeyFile: bc.Web.KeyFile, Interval: bc.Web.ReloadInterval.Duration, Log: log}
		if err := fc.Load(); err != nil {
			return nil, err
		}
		if err := fc.Register(reg); err != nil {
			return nil, err
		}
		go fc.Run(ctx)
		o.GetCertificate = fc.GetCertificate
	case config.BundleProfileSPIFFE:
		// An X.509-SVID meshca issues itself, renewed at two thirds of
		// its lifetime and when the intermediate rotates.
		sc := &tlsconfig.ServingCert{Authority: rt.Authority, SPIFFEID: bc.ID(), DNSNames: bc.SPIFFE.DNSNames, TTL: bc.SPIFFE.CertTTL.Duration, Log: log}
		if err := sc.Start(ctx); err != nil {
			return nil, fmt.Errorf("bundleEndpoint.https_spiffe: %w", err)
		}
		o.GetCertificate = sc.GetCertificate
	default:
		return nil, errors.New("bundleEndpoint.profile: not validated")
	}
	srv, err := bundleendpoint.Listen(o)
	if err != nil {
		return nil, err
	}
	done = make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ctx); err != nil {
			log.Error("the SPIFFE bundle endpoint stopped", "error", err)
		}
	}()
	log.Info("serving the SPIFFE bundle endpoint", "address", srv.Addr().String(), "path", bc.Path, "profile", bc.Profile,
		"sequence", b.Current().Sequence, "refresh_hint", bc.RefreshHint.Duration.String())
	return done, nil
}

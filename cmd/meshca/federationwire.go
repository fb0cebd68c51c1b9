package main

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/rotation/alert"
	"github.com/meshca/meshca/trustbundle/federation"
)

// federationDeps is what federation in needs from serve.
type federationDeps struct {
	cfg      *config.Config
	trust    *trustPublisher // nil when trust distribution is off
	clusters meshClusters    // the clusters section's, each with its own publisher
	alerting *alerts
	single   *singletons
	log      *slog.Logger
	reg      prometheus.Registerer
}

// startFederation polls the foreign trust domains of federation.trustDomains
// (nothing without any) until ctx ends, on every replica, so that each
// exports their staleness; their roots go to the trust publisher, which
// writes them (as every ClusterTrustBundle) on the Lease holder only. The
// kept bundles are handed over before the publisher starts, so that a
// restart never deletes a foreign trust domain's bundle it still
// configures.
func startFederation(ctx context.Context, d federationDeps) error {
	fc := d.cfg.Federation
	if !fc.Enabled() {
		return nil
	}
	o := federation.Options{Config: fc, Log: d.log, Registerer: d.reg}
	var sinks federatedSinks
	if d.cfg.TrustBundle.ClusterTrustBundles.On() {
		if d.trust != nil {
			sinks = append(sinks, d.trust.p)
		}
		// Every cluster of the mesh trusts the partner, not only the
		// local one: each cluster's publisher writes the same labelled
		// ClusterTrustBundles (clusters section).
		for _, c := range d.clusters {
			sinks = append(sinks, c.pub.p)
		}
	}
	if len(sinks) > 0 {
		o.Sink = sinks
	} else {
		d.log.Warn("federation: not publishing the foreign roots as ClusterTrustBundles: set trustBundle.enabled (and keep trustBundle.clusterTrustBundles.enabled); meshca federation snippet still prints Istio's caCertificates")
	}
	if d.alerting != nil {
		o.Alerts = leaderAlerts{engine: d.alerting.engine, leads: d.single.leads()}
	}
	p, err := federation.New(o)
	if err != nil {
		return err
	}
	p.Publish(ctx)
	go p.Run(ctx)
	names := make([]string, len(fc.TrustDomains))
	for i, t := range fc.TrustDomains {
		names[i] = t.TrustDomain
	}
	d.log.Info("federation: polling foreign bundle endpoints", "trust_domains", names, "state_dir", fc.StateDir,
		"min_refresh", fc.MinRefresh.Duration, "max_refresh", fc.MaxRefresh.Duration, "stale_after", fc.StaleAfter.Duration)
	return nil
}

// federatedSinks hands the foreign roots to every trust publisher: the
// local cluster's and each of the clusters section's.
type federatedSinks []federation.Sink

// SetFederated implements federation.Sink; every sink gets the roots even
// when one refuses them.
func (ss federatedSinks) SetFederated(ctx context.Context, configured []string, roots map[string][]*x509.Certificate) error {
	var errs []error
	for _, s := range ss {
		errs = append(errs, s.SetFederated(ctx, configured, roots))
	}
	return errors.Join(errs...)
}

// leaderAlerts raises and clears the staleness alerts on the Lease holder
// only (every replica polls; one keeps the alert state).
type leaderAlerts struct {
	engine *alert.Engine
	leads  func() bool // nil without leader election
}

func (a leaderAlerts) Raise(ctx context.Context, al alert.Alert) error {
	if a.leads != nil && !a.leads() {
		return nil
	}
	return a.engine.Raise(ctx, al)
}

func (a leaderAlerts) Clear(ctx context.Context, key alert.Key) error {
	if a.leads != nil && !a.leads() {
		return nil
	}
	return a.engine.Clear(ctx, key)
}

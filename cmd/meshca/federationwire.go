package main

import (
	"context"
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
	if d.trust != nil && d.cfg.TrustBundle.ClusterTrustBundles.On() {
		o.Sink = d.trust.p
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

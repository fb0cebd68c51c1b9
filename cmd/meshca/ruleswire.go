package main

import (
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/crl"
	"github.com/meshca/meshca/rotation"
	"github.com/meshca/meshca/rotation/inventory"
	"github.com/meshca/meshca/rotation/rules"
)

// ruleDeps are what the alert rules look at.
type ruleDeps struct {
	cfg *config.Config
	rt  *authority.Runtime
	inv *inventoryParts
	crl *crl.Manager
	// reporters are the rotating controllers (intermediate, root, and
	// each separate signer's intermediate).
	reporters []rotation.Reporter
	// lineages are the signers with their own intermediate.
	lineages signerLineages
	log      *slog.Logger
}

// startRules runs the alert rules (alerts.rules) through the alerting
// engine as a singleton job: only the Lease holder, which delivers the
// alerts, evaluates them and writes their states, so that replicas never
// race on one alert's state (every replica's own health is in its
// metrics). Without an engine (no sink configured) it does nothing.
func startRules(a *alerts, single *singletons, d ruleDeps) {
	if a == nil {
		return
	}
	rc := d.cfg.Alerts.Rules
	s := &rules.Sweeper{Alerts: a.engine, Rules: newRules(d), Interval: rc.Interval.Duration, Log: d.log.With("component", "alert-rules")}
	single.Go("alert-rules", s.Run)
	d.log.Info("alert rules started", "interval", rc.Interval.Duration, "rules", len(s.Rules))
}

// newRules builds every rule from d.
func newRules(d ruleDeps) []rules.Rule {
	rc := d.cfg.Alerts.Rules
	sourceHealth := &rules.RootSourceHealth{Kind: d.rt.Root.Kind(), Health: d.rt.Root.Health, After: rc.RootSourceUnhealthyFor.Duration}
	if o, ok := d.rt.Root.(interface{ OtherHealth() error }); ok {
		sourceHealth.Other = o.OtherHealth // a root rotation's source
	}
	out := []rules.Rule{
		&rules.CAExpiry{
			Sources:    d.inv.expiring,
			Thresholds: expiryThresholds(rc),
			Skip:       retiredIntermediate(d.rt, d.lineages),
			Action:     func(c inventory.Certificate, now time.Time) string { return expiryAction(d, c, now) },
		},
		sourceHealth,
		&rules.RotationStuck{Reporters: d.reporters},
	}
	if d.crl != nil {
		out = append(out, &rules.CRLStale{CRLs: d.crl.CRLs}, &rules.CRLTooLarge{Oversize: d.crl.Oversize})
	}
	if scan := d.inv.secrets; scan != nil {
		out = append(out, &rules.SecretsExpiring{
			Namespaces: func() ([]inventory.SecretExpiry, bool) { return scan.Namespaces(), scan.Synced() },
			Thresholds: expiryThresholds(rc),
		})
	}
	if d.inv.workloads != nil {
		out = append(out, &rules.WorkloadsNotRenewed{Namespaces: d.inv.workloads.Namespaces, Window: rc.WorkloadRenewalWindow.Duration})
	}
	return out
}

func expiryThresholds(rc config.AlertRulesConfig) rules.Thresholds {
	return rules.Thresholds{WarningFraction: rc.Expiry.WarningFraction,
		WarningBefore: rc.Expiry.WarningBefore.Duration, CriticalBefore: rc.Expiry.CriticalBefore.Duration}
}

// retiredIntermediate skips the retired generations: they stay published
// until their last leaf expires and are never renewed. The active
// generation of every signer lineage is not retired.
func retiredIntermediate(rt *authority.Runtime, lineages signerLineages) func(inventory.Certificate) bool {
	return func(c inventory.Certificate) bool {
		if c.Kind != inventory.KindIntermediate || c.Name == store.GenerationScope(rt.Authority.Material().Generation) {
			return false
		}
		return !slices.Contains(lineages.activeScopes(), c.Name)
	}
}

// expiryAction says what meshca does about c's expiry at now.
func expiryAction(d ruleDeps, c inventory.Certificate, now time.Time) string {
	switch c.Kind {
	case inventory.KindIntermediate:
		if !d.rt.Root.Capabilities().Mint {
			return "meshca cannot mint a successor to a pre-issued intermediate: replace the cacerts files (root.file.cacertsDir) with a new intermediate and restart meshca."
		}
		at := rotateAt(d, c)
		if at.After(now) {
			return fmt.Sprintf("meshca will rotate it at %s.", at.UTC().Format(time.RFC3339))
		}
		return fmt.Sprintf("meshca's rotation of it was due at %s and has not happened: see meshca status and any RotationStuck or RootSourceUnreachable alert.", at.UTC().Format(time.RFC3339))
	case inventory.KindCACerts:
		if d.cfg.TrustBundle.PublishCACerts && d.rt.Root.Capabilities().Mint {
			return "meshca rewrites the cacerts Secret when it rotates its intermediate; if this certificate is not meshca's, replace the cacerts files."
		}
	}
	return rules.DefaultAction(c)
}

// rotateAt is when the intermediate c is rotated: the intermediate
// controller's next step when it reports one, else
// intermediate.activateThreshold of its lifetime.
func rotateAt(d ruleDeps, c inventory.Certificate) time.Time {
	ca := rotation.CAIntermediate
	for _, l := range d.lineages {
		if a := l.m.Active(); a != nil && c.Name == store.GenerationScope(a.Generation) {
			ca = rotation.IntermediateCA(l.name)
		}
	}
	for _, r := range d.reporters {
		if st := r.RotationStatus(); st.CA == ca && !st.Next.IsZero() {
			return st.Next
		}
	}
	life := c.Cert.NotAfter.Sub(c.Cert.NotBefore)
	return c.Cert.NotBefore.Add(time.Duration(d.cfg.Intermediate.ActivateThreshold * float64(life)))
}

package rules

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/meshca/meshca/rotation/alert"
	"github.com/meshca/meshca/rotation/inventory"
)

// RuleSecretsExpiring is the alert of a namespace whose scanned workload
// Secrets hold a certificate near expiry.
const RuleSecretsExpiring = "WorkloadSecretExpiring"

// secretCriticalFraction is the fraction of a scanned certificate's
// lifetime left under which it is critical (with CriticalBefore).
const secretCriticalFraction = 0.1

// SecretsExpiring raises RuleSecretsExpiring for each namespace of the
// Secret scan (bounded: its top N and _other) whose first-expiring leaf
// is within its thresholds. The scan's aggregate holds only leaves that
// one of meshca's intermediates signed, so a certificate a tenant writes
// into its Secret cannot page. Unlike a CA certificate, a workload
// certificate is short-lived and renewed at half its life, so the LATER
// of the two thresholds applies: warning at the later of WarningFraction
// of the lifetime and WarningBefore left, critical at the later of 10% of
// the lifetime and CriticalBefore left, or once expired.
type SecretsExpiring struct {
	// Namespaces is inventory.SecretScan's aggregate and whether its
	// informers have synced.
	Namespaces func() ([]inventory.SecretExpiry, bool)
	Thresholds Thresholds
}

// Names implements Rule.
func (r *SecretsExpiring) Names() []string { return []string{RuleSecretsExpiring} }

// Evaluate implements Rule.
func (r *SecretsExpiring) Evaluate(_ context.Context, now time.Time) ([]alert.Alert, error) {
	agg, synced := r.Namespaces()
	if !synced {
		return nil, errors.New("the Secret scan's informers have not synced")
	}
	var out []alert.Alert
	for _, e := range agg {
		life := e.NotAfter.Sub(e.NotBefore)
		left := e.NotAfter.Sub(now)
		var sev alert.Severity
		switch {
		case left <= min(r.Thresholds.CriticalBefore, time.Duration(secretCriticalFraction*float64(life))):
			sev = alert.Critical
		case left <= min(r.Thresholds.WarningBefore, time.Duration(r.Thresholds.WarningFraction*float64(life))):
			sev = alert.Warning
		default:
			continue
		}
		where := "namespace " + e.Namespace
		if e.Namespace == inventory.NamespaceOther {
			where = "the namespaces beyond inventory.secretScan.maxNamespaces"
		}
		when := fmt.Sprintf("expires at %s (%s left)", stamp(e.NotAfter), days(left))
		if left <= 0 {
			when = "expired at " + stamp(e.NotAfter)
		}
		out = append(out, alert.Alert{
			Rule: RuleSecretsExpiring, Object: "namespace " + e.Namespace, Severity: sev,
			Summary: fmt.Sprintf("In %s, the first of %d scanned Secrets' certificates %s.", where, e.Secrets, when),
			Action:  "meshca does not write these Secrets: whoever does (istio-agent, cert-manager) has not renewed it; check its log.",
			Expires: e.NotAfter,
		})
	}
	return out, nil
}

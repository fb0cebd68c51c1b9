package rules

import (
	"context"
	"fmt"
	"time"

	"github.com/meshca/meshca/rotation/alert"
	"github.com/meshca/meshca/rotation/inventory"
)

// RuleWorkloadsNotRenewed is the alert of a namespace whose workloads let
// their newest certificate come near expiry.
const RuleWorkloadsNotRenewed = "WorkloadCertificatesNotRenewed"

// DefaultWorkloadWindow: istio-agent renews at half a certificate's
// lifetime (24h by default), so under 6h left is a renewal missed by 6h.
const DefaultWorkloadWindow = 6 * time.Hour

// WorkloadsNotRenewed raises RuleWorkloadsNotRenewed for each namespace of
// the workload inventory (bounded: its top N and _other) whose earliest
// newest-certificate notAfter is within Window.
type WorkloadsNotRenewed struct {
	// Namespaces is inventory.Workloads.Namespaces.
	Namespaces func(context.Context) ([]inventory.NamespaceExpiry, error)
	Window     time.Duration
}

// Names implements Rule.
func (r *WorkloadsNotRenewed) Names() []string { return []string{RuleWorkloadsNotRenewed} }

// Evaluate implements Rule.
func (r *WorkloadsNotRenewed) Evaluate(ctx context.Context, now time.Time) ([]alert.Alert, error) {
	window := r.Window
	if window <= 0 {
		window = DefaultWorkloadWindow
	}
	agg, err := r.Namespaces(ctx)
	var out []alert.Alert
	for _, n := range agg {
		left := n.EarliestLatest.Sub(now)
		if left > window {
			continue
		}
		where := "namespace " + n.Namespace
		switch n.Namespace {
		case inventory.NamespaceOther:
			where = "the namespaces beyond inventory.workloads.maxNamespaces"
		case inventory.NamespaceUnknown:
			where = "identities outside Istio's /ns/<namespace>/sa/<name> form"
		}
		out = append(out, alert.Alert{
			Rule: RuleWorkloadsNotRenewed, Object: "namespace " + n.Namespace, Severity: alert.Warning,
			Summary: fmt.Sprintf("In %s, the newest certificate of at least one of %d workload identities expires at %s (%s left): it has not renewed (or the workload was removed).",
				where, n.Identities, stamp(n.EarliestLatest), days(left)),
			Action: "meshca issues a certificate whenever the workload asks; check the workload's istio-agent (or ztunnel) log and its access to meshca's Istio endpoint.",
			// No fingerprint: while the namespace stays in the window it is
			// one occurrence, whichever identity is the earliest.
			Expires: n.EarliestLatest,
		})
	}
	return out, err
}

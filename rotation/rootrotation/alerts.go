package rootrotation

import (
	"context"
	"fmt"

	"github.com/meshca/meshca/rotation"
	"github.com/meshca/meshca/rotation/alert"
)

// Alert rules of the root rotation.
const (
	// RuleRootRotation announces each phase: what happens, where, and what
	// meshca is doing; it resolves when the rotation is done.
	RuleRootRotation = "RootRotation"
	// RuleRootRotationStuck fires while the rotation is stuck.
	RuleRootRotationStuck = "RootRotationStuck"
	// RuleRootRotationWorkloadsLeft warns that phase 2 ended at its maximum
	// wait with workload certificates issued before both roots were
	// published; it resolves when the rotation is done.
	RuleRootRotationWorkloadsLeft = "RootRotationWorkloadsLeft"
)

func objectOf(id string) string { return "root rotation " + id }

// action says what meshca does in phase p.
func (c *Controller) action(p Phase) string {
	r := c.rec
	switch p {
	case PhasePublish:
		return "meshca publishes both roots: the new root is appended to root-cert.pem in the cacerts Secret, and the istio-ca-root-cert ConfigMaps, the ClusterTrustBundles and the Istio endpoint's chain carry both"
	case PhaseWaitWorkloads:
		return fmt.Sprintf("meshca waits until every workload holds a certificate issued with both roots (at least %s, at most %s); 'meshca rotate advance' ends the wait now", r.Waits.WorkloadsMin, r.Waits.WorkloadsMax)
	case PhaseSwitch:
		return "meshca activates an intermediate under the new root; new workload certificates chain to it"
	case PhaseWaitTTL:
		return fmt.Sprintf("meshca waits until no workload certificate under the old root is left (at most %s); 'meshca rotate advance' ends the wait now", r.Waits.TTLMax)
	case PhaseRemove:
		return "meshca removes the old root from root-cert.pem, the ConfigMaps, the ClusterTrustBundles and the Istio endpoint's chain"
	}
	return ""
}

// alertOp is one Raise or Clear.
type alertOp struct {
	al    alert.Alert
	clear bool
}

// alertPlanLocked turns events and st's stuck state into alert operations;
// it runs under c.mu, so that the operations follow the journal's order.
func (c *Controller) alertPlanLocked(events []phaseEvent, st rotation.Status) (Alerter, []alertOp) {
	a := c.o.Alerts
	if a == nil {
		return nil, nil
	}
	var ops []alertOp
	for _, e := range events {
		if l := e.left; l != nil {
			ops = append(ops, alertOp{al: alert.Alert{Rule: RuleRootRotationWorkloadsLeft, Object: objectOf(e.id), Severity: alert.Warning,
				Summary: fmt.Sprintf("Root rotation %s switched to the new root at the maximum wait of %s with %d of %d workload identities that got no certificate since both roots were published (%d of %d unexpired certificates predate them)",
					e.id, l.maxWait, l.n.stale, l.n.identities, l.n.before, l.n.total),
				Action:      fmt.Sprintf("those workloads may trust only the old root until they renew their certificates; restart them (their istio-agent then fetches both roots) before the old root is removed in phase %s", string(PhaseRemove)),
				Fingerprint: string(PhaseWaitWorkloads)}})
		}
		switch {
		case e.phase == PhaseDone:
			ops = append(ops, alertOp{al: alert.Alert{Rule: RuleRootRotation, Object: objectOf(e.id)}, clear: true},
				alertOp{al: alert.Alert{Rule: RuleRootRotationWorkloadsLeft, Object: objectOf(e.id)}, clear: true},
				alertOp{al: alert.Alert{Rule: RuleRootRotationStuck, Object: objectOf(e.id)}, clear: true})
			continue
		case e.event == "pause":
			ops = append(ops, alertOp{al: alert.Alert{Rule: RuleRootRotation, Object: objectOf(e.id), Severity: alert.Warning,
				Summary: fmt.Sprintf("Root rotation %s is paused in phase %s by %s", e.id, e.phase, e.by),
				Action:  "meshca does nothing until 'meshca rotate resume'", Fingerprint: string(e.phase) + "/pause"}})
			continue
		}
		summary := fmt.Sprintf("Root rotation %s: phase %s", e.id, e.phase)
		switch e.event {
		case "advance":
			summary += " (wait ended by " + e.by + ")"
		case "resume":
			summary += " (resumed by " + e.by + ")"
		}
		if e.detail != "" {
			summary += ": " + e.detail
		}
		ops = append(ops, alertOp{al: alert.Alert{Rule: RuleRootRotation, Object: objectOf(e.id), Severity: alert.Warning,
			Summary: summary, Action: c.action(e.phase), Fingerprint: string(e.phase)}})
	}
	if c.rec == nil {
		return a, ops
	}
	id := c.rec.ID
	switch {
	case st.Stuck:
		ops = append(ops, alertOp{al: alert.Alert{Rule: RuleRootRotationStuck, Object: objectOf(id), Severity: alert.Critical,
			Summary: fmt.Sprintf("Root rotation %s is stuck in phase %s: %s", id, st.Phase, st.Problem),
			Action:  "meshca keeps retrying; fix the cause, or pause the rotation (meshca rotate pause)", Fingerprint: st.Phase}})
	case c.stuckRaised, c.stuckClearFailed.Swap(false):
		ops = append(ops, alertOp{al: alert.Alert{Rule: RuleRootRotationStuck, Object: objectOf(id)}, clear: true})
	}
	c.stuckRaised = st.Stuck
	return a, ops
}

// unlockAndAnnounce releases c.mu and sends the alerts of events and st,
// in the order the transitions were journaled: the next caller's alerts
// wait for these.
func (c *Controller) unlockAndAnnounce(ctx context.Context, events []phaseEvent, st rotation.Status) {
	c.shown.Store(&st)
	a, ops := c.alertPlanLocked(events, st)
	c.annMu.Lock()
	c.mu.Unlock()
	defer c.annMu.Unlock()
	ctx = context.WithoutCancel(ctx)
	for _, op := range ops {
		var err error
		if op.clear {
			err = a.Clear(ctx, op.al.Key())
		} else {
			err = a.Raise(ctx, op.al)
		}
		if err != nil {
			c.log.Warn("root rotation: alert", "rule", op.al.Rule, "error", err)
			if op.clear && op.al.Rule == RuleRootRotationStuck {
				c.stuckClearFailed.Store(true) // cleared again at the next evaluation
			}
		}
	}
}

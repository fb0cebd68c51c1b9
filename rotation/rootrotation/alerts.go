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

// announce raises the alerts of events and of st's stuck state; it never
// holds the controller's lock.
func (c *Controller) announce(ctx context.Context, events []phaseEvent, st rotation.Status) {
	c.mu.Lock()
	a := c.o.Alerts
	if a == nil {
		c.mu.Unlock()
		return
	}
	var id string
	if c.rec != nil {
		id = c.rec.ID
	}
	type raise struct {
		al    alert.Alert
		clear bool
	}
	var todo []raise
	for _, e := range events {
		switch {
		case e.phase == PhaseDone:
			todo = append(todo, raise{al: alert.Alert{Rule: RuleRootRotation, Object: objectOf(e.id)}, clear: true})
			continue
		case e.event == "pause":
			todo = append(todo, raise{al: alert.Alert{Rule: RuleRootRotation, Object: objectOf(e.id), Severity: alert.Warning,
				Summary: fmt.Sprintf("Root rotation %s is paused in phase %s by %s", e.id, e.phase, e.by),
				Action:  "meshca does nothing until 'meshca rotate resume'", Fingerprint: string(e.phase) + "/pause"}})
			continue
		}
		summary := fmt.Sprintf("Root rotation %s: phase %s", e.id, e.phase)
		if e.event == "advance" {
			summary += " (wait ended by " + e.by + ")"
		}
		if e.detail != "" {
			summary += ": " + e.detail
		}
		todo = append(todo, raise{al: alert.Alert{Rule: RuleRootRotation, Object: objectOf(e.id), Severity: alert.Warning,
			Summary: summary, Action: c.action(e.phase), Fingerprint: string(e.phase)}})
	}
	stuckWas := c.stuckRaised
	c.stuckRaised = st.Stuck
	c.mu.Unlock()
	for _, t := range todo {
		var err error
		if t.clear {
			err = a.Clear(ctx, t.al.Key())
		} else {
			err = a.Raise(ctx, t.al)
		}
		if err != nil {
			c.log.Warn("root rotation: alert", "rule", t.al.Rule, "error", err)
		}
	}
	if id == "" {
		return
	}
	var err error
	switch {
	case st.Stuck:
		err = a.Raise(ctx, alert.Alert{Rule: RuleRootRotationStuck, Object: objectOf(id), Severity: alert.Critical,
			Summary: fmt.Sprintf("Root rotation %s is stuck in phase %s: %s", id, st.Phase, st.Problem),
			Action:  "meshca keeps retrying; fix the cause, or pause the rotation (meshca rotate pause)", Fingerprint: st.Phase})
	case stuckWas:
		err = a.Clear(ctx, alert.KeyOf(RuleRootRotationStuck, objectOf(id)))
	}
	if err != nil {
		c.log.Warn("root rotation: alert", "rule", RuleRootRotationStuck, "error", err)
	}
}

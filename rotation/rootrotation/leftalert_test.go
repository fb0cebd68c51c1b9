package rootrotation

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/rotation/alert"
)

// Phase 2 moves on at its maximum wait even when workload certificates
// from before both roots were published are left; a warning alert says
// how many, and it resolves when the rotation is done.
func TestController_WorkloadsLeftAtTheMaximumWaitRaiseAWarning(t *testing.T) {
	h := newHarness(t)
	h.issue("01", 72*time.Hour) // from before the rotation, outlives phase 2
	h.issueTo("03", "spiffe://cluster.local/ns/default/sa/stale", 72*time.Hour)
	h.start()
	h.step()
	h.requirePhase(PhaseWaitWorkloads)
	h.clk.Step(time.Hour)
	h.issue("02", 72*time.Hour) // with both roots
	id := h.journal().ID

	h.clk.Step(11*time.Hour + 10*time.Minute) // the maximum wait, 12h10m
	h.step()
	h.requirePhase(PhaseWaitTTL)
	want := alert.Alert{Rule: RuleRootRotationWorkloadsLeft, Object: objectOf(id), Severity: alert.Warning,
		Summary:     "Root rotation " + id + " switched to the new root at the maximum wait of 12h10m0s with 1 of 2 workload identities that got no certificate since both roots were published (2 of 3 unexpired certificates predate them)",
		Action:      "those workloads may trust only the old root until they renew their certificates; restart them (their istio-agent then fetches both roots) before the old root is removed in phase remove-old-root",
		Fingerprint: string(PhaseWaitWorkloads)}
	require.Contains(t, h.alerts.raisedOf(RuleRootRotationWorkloadsLeft), want)
	require.Len(t, h.alerts.raisedOf(RuleRootRotationWorkloadsLeft), 1)

	h.clk.Step(72 * time.Hour) // every leaf under A expired
	h.step()
	h.requirePhase(PhaseDone)
	require.Contains(t, h.alerts.clearsOf(), alert.KeyOf(RuleRootRotationWorkloadsLeft, objectOf(id)))
}

// A workload that renewed keeps its previous certificate until it
// expires: certificates from before the roots were published are normal
// at phase 2's maximum wait, and raise nothing while every identity got a
// certificate since.
func TestController_RenewedWorkloadsWithValidOldCertificatesRaiseNoWarning(t *testing.T) {
	h := newHarness(t)
	h.issue("01", 72*time.Hour)
	h.start()
	h.step()
	h.requirePhase(PhaseWaitWorkloads)
	h.clk.Step(time.Hour)
	h.issue("02", 72*time.Hour) // the same identity renewed with both roots
	h.clk.Step(11*time.Hour + 10*time.Minute)
	h.step()
	h.requirePhase(PhaseWaitTTL)
	require.Empty(t, h.alerts.raisedOf(RuleRootRotationWorkloadsLeft))
}

// Without certificates left, phase 2's end raises no such alert.
func TestController_NoWorkloadsLeftNoWarning(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.step()
	h.clk.Step(12*time.Hour + 10*time.Minute)
	h.step()
	h.requirePhase(PhaseDone)
	require.Empty(t, h.alerts.raisedOf(RuleRootRotationWorkloadsLeft))
}

func (f *fakeAlerts) raisedOf(rule string) []alert.Alert {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []alert.Alert
	for _, a := range f.raised {
		if a.Rule == rule {
			out = append(out, a)
		}
	}
	return out
}

func (f *fakeAlerts) clearsOf() []alert.Key {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]alert.Key(nil), f.clears...)
}

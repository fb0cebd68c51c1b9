package rootrotation

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/rotation"
	"github.com/meshca/meshca/rotation/alert"
)

func (h *harness) step() rotation.Status {
	h.c.Step(context.Background())
	return h.c.RotationStatus()
}

func (h *harness) requirePhase(p Phase) {
	h.t.Helper()
	st := h.c.RotationStatus()
	require.Equal(h.t, string(p), st.Phase, "status: %+v", st)
	require.Equal(h.t, p.Code(), st.PhaseCode)
	require.Equal(h.t, string(p), h.journal().Phase, "the journal")
	require.Equal(h.t, p, h.src.Phase(), "the source")
}

// The five phases from A to B, with the roots and the published bytes at
// each step.
func TestController_RotatesAtoAandBtoB(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	a, b := h.a.cert, h.b.cert
	st := h.c.RotationStatus()
	require.Equal(t, rotation.Status{CA: rotation.CARoot, Phase: "idle"}, st)
	oldPEM := h.mgr.lastPublished()
	require.Equal(t, pemOf(a), oldPEM)
	h.issue("01", 24*time.Hour) // a workload certificate from before the rotation

	h.start()
	require.Equal(t, string(PhasePublish), h.journal().Phase, "journaled before anything acts")
	require.Equal(t, 0, h.mgr.refreshes)
	roots, err := h.src.Roots(ctx)
	require.NoError(t, err)
	require.Equal(t, []*x509.Certificate{a, b}, roots, "A first, then B")

	// Phase 1 publishes A+B: the old bytes with the new bytes appended.
	h.step()
	require.Equal(t, 1, h.mgr.refreshes)
	both := h.mgr.lastPublished()
	require.Equal(t, append(append([]byte(nil), oldPEM...), pemOf(b)...), both)
	h.requirePhase(PhaseWaitWorkloads)
	st = h.c.RotationStatus()
	require.Equal(t, "1 of 1 unexpired workload certificates were issued before both roots were published; 1 of 1 workload identities got none since", st.Waiting)
	require.Equal(t, t0.Add(12*time.Hour+10*time.Minute), st.Next)

	// Phase 2 waits while a certificate from before is unexpired.
	h.clk.Step(time.Hour)
	h.issue("02", 24*time.Hour)
	h.step()
	h.requirePhase(PhaseWaitWorkloads)
	require.Equal(t, "1 of 2 unexpired workload certificates were issued before both roots were published; 0 of 1 workload identities got none since", h.c.RotationStatus().Waiting)
	require.Equal(t, 1, h.mgr.rotations, "no switch yet")

	// The maximum wait ends it: the switch (phase 3) mints under B at once.
	h.clk.Step(11*time.Hour + 10*time.Minute)
	h.step()
	h.requirePhase(PhaseWaitTTL)
	require.Equal(t, 2, h.mgr.rotations)
	require.NoError(t, h.mgr.bundle.Cert.CheckSignatureFrom(b), "the new intermediate is under B")
	require.Equal(t, []*x509.Certificate{a, b}, h.mgr.bundle.Roots, "both roots stay published")
	require.Equal(t, both, h.mgr.lastPublished())
	chain := h.mgr.bundle.Chain()
	require.True(t, chain[len(chain)-1].Equal(b))

	// Phase 4 waits for the leaves under A: 01 and 02 are A's.
	h.issue("03", 24*time.Hour) // under B
	h.step()
	h.requirePhase(PhaseWaitTTL)
	require.Equal(t, "2 unexpired leaf certificates were issued by intermediates under the old root", h.c.RotationStatus().Waiting)
	h.clk.Step(12 * time.Hour) // 01 expired, 02 not
	h.step()
	require.Equal(t, "1 unexpired leaf certificates were issued by intermediates under the old root", h.c.RotationStatus().Waiting)
	h.clk.Step(time.Hour) // 02 expired

	// Phase 5 removes A: B's bytes, a byte-substring of A+B; done.
	h.step()
	h.requirePhase(PhaseDone)
	final := h.mgr.lastPublished()
	require.Equal(t, pemOf(b), final)
	require.True(t, bytes.Contains(both, final), "a byte-substring of the A+B bundle")
	roots, err = h.src.Roots(ctx)
	require.NoError(t, err)
	require.Equal(t, []*x509.Certificate{b}, roots)
	st = h.c.RotationStatus()
	require.Equal(t, 0, st.PhaseCode)
	require.Equal(t, "done", st.Phase)
	require.Contains(t, st.Waiting, "Update the configuration: set root.file.rootCert "+h.b.spec.File.RootCert, "the configuration still names A")

	var events []string
	for _, e := range h.journal().History {
		events = append(events, e.Event+" "+e.Phase)
	}
	require.Equal(t, []string{"start publish-both-roots", "enter wait-for-workloads", "enter switch-intermediate", "enter wait-out-ttl", "enter remove-old-root", "enter done"}, events)
	// One alert per phase; resolved when done.
	require.Eventually(t, func() bool {
		return len(h.alerts.fingerprints(RuleRootRotation)) == 5
	}, 5*time.Second, time.Millisecond)
	require.Equal(t, []string{"publish-both-roots", "wait-for-workloads", "switch-intermediate", "wait-out-ttl", "remove-old-root"}, h.alerts.fingerprints(RuleRootRotation))
	// Phase 2 ended at its maximum with 01 from before both roots, but its
	// identity renewed (02): no warning; done clears the key all the same.
	// The stuck alert is cleared at the first evaluation (an earlier
	// process may have raised it) and when done.
	require.Empty(t, h.alerts.fingerprints(RuleRootRotationWorkloadsLeft))
	id := objectOf(h.journal().ID)
	require.Equal(t, []alert.Key{alert.KeyOf(RuleRootRotationStuck, id), alert.KeyOf(RuleRootRotation, id), alert.KeyOf(RuleRootRotationWorkloadsLeft, id), alert.KeyOf(RuleRootRotationStuck, id)}, h.alerts.clearsOf())
}

// Phase 2 ends before its maximum once every unexpired certificate
// carries both roots and the minimum wait passed.
func TestController_WorkloadsWaitEndsWhenNoOldCertificateIsLeft(t *testing.T) {
	h := newHarness(t)
	h.issue("01", 2*time.Hour)
	// meshca's own serving certificate is not a workload's.
	require.NoError(t, h.st.PutIssuance(context.Background(), store.Issuance{Serial: "5e", Identity: "dns:meshca.istio-system.svc", NotBefore: t0,
		NotAfter: t0.Add(24 * time.Hour), Fingerprint: "5e", Profile: authority.ProfileServing, Requester: "meshca", Generation: h.mgr.active, IssuedAt: t0}))
	h.start()
	h.step()
	h.requirePhase(PhaseWaitWorkloads)
	h.clk.Step(5 * time.Minute)
	h.issue("02", 24*time.Hour)
	h.step()
	h.requirePhase(PhaseWaitWorkloads)
	h.clk.Step(2 * time.Hour) // 01 expired; 02 was issued with both roots
	h.step()
	// 02 is A's; the serving certificate under A is not counted.
	h.requirePhase(PhaseWaitTTL)
	require.Equal(t, "1 unexpired leaf certificates were issued by intermediates under the old root", h.c.RotationStatus().Waiting)
}

func TestController_PauseResumeAdvance(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.issue("01", 24*time.Hour)

	_, err := h.c.Pause(ctx, "op")
	require.Error(t, err, "nothing to pause")
	h.start()
	_, err = h.c.Advance(ctx, "op")
	require.ErrorContains(t, err, "not a wait")
	h.step()
	h.requirePhase(PhaseWaitWorkloads)

	st, err := h.c.Pause(ctx, "op")
	require.NoError(t, err)
	require.True(t, st.Paused)
	require.True(t, h.journal().Paused, "journaled")
	h.clk.Step(24 * time.Hour)
	h.step()
	h.requirePhase(PhaseWaitWorkloads)
	_, err = h.c.Advance(ctx, "op")
	require.ErrorContains(t, err, "paused")

	// A paused rotation stays paused across a restart.
	h.restart()
	require.True(t, h.c.RotationStatus().Paused)
	h.step()
	h.requirePhase(PhaseWaitWorkloads)

	_, err = h.c.Resume(ctx, "op")
	require.NoError(t, err)
	require.False(t, h.journal().Paused)

	h.clk.Step(-23 * time.Hour) // well within the maximum wait again
	h.step()
	h.requirePhase(PhaseWaitWorkloads)
	st, err = h.c.Advance(ctx, "op")
	require.NoError(t, err)
	require.Equal(t, string(PhaseSwitch), st.Phase)
	last := h.journal().History[len(h.journal().History)-1]
	require.Equal(t, "advance", last.Event)
	require.Equal(t, "op", last.By)
	h.step()
	h.requirePhase(PhaseWaitTTL)
	require.NoError(t, h.mgr.bundle.Cert.CheckSignatureFrom(h.b.cert))
}

// A failing action is retried each step; after three failures the
// rotation is stuck, and an alert says so; it clears on success.
func TestController_StuckWhenTheActionKeepsFailing(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.mgr.setFail(errors.New("the publisher is down"))
	for range 2 {
		h.step()
		h.requirePhase(PhasePublish)
		require.False(t, h.c.RotationStatus().Stuck)
	}
	st := h.step()
	require.True(t, st.Stuck)
	require.Contains(t, st.Problem, "the publisher is down")
	require.Eventually(t, func() bool { return len(h.alerts.fingerprints(RuleRootRotationStuck)) > 0 }, 5*time.Second, time.Millisecond)
	h.mgr.setFail(nil)
	st = h.step()
	require.False(t, st.Stuck)
	h.requirePhase(PhaseWaitWorkloads)
	require.Eventually(t, func() bool { return h.cleared(RuleRootRotationStuck) }, 5*time.Second, time.Millisecond)
}

// cleared reports whether the alert rule/object of the rotation was cleared.
func (h *harness) cleared(rule string) bool {
	h.alerts.mu.Lock()
	defer h.alerts.mu.Unlock()
	for _, k := range h.alerts.clears {
		if string(k) == rule+"/"+objectOf(h.journal().ID) {
			return true
		}
	}
	return false
}

// stuckHarness is a harness whose rotation is stuck in its first phase
// (the publisher keeps failing).
func stuckHarness(t *testing.T) *harness {
	t.Helper()
	h := newHarness(t)
	h.start()
	h.mgr.setFail(errors.New("the publisher is down"))
	for range 3 {
		h.step()
	}
	require.True(t, h.c.RotationStatus().Stuck)
	return h
}

// The stuck alert is kept by the alerting engine across restarts and
// failovers: a controller that restarts, or a new Lease holder, clears it
// once the rotation moves again, although it never raised it itself.
func TestController_StuckAlertIsClearedAfterARestart(t *testing.T) {
	h := stuckHarness(t)
	require.Eventually(t, func() bool { return len(h.alerts.fingerprints(RuleRootRotationStuck)) > 0 }, 5*time.Second, time.Millisecond)

	h.restart()
	h.mgr.setFail(nil)
	st := h.step()
	require.False(t, st.Stuck)
	h.requirePhase(PhaseWaitWorkloads)
	require.Eventually(t, func() bool { return h.cleared(RuleRootRotationStuck) }, 5*time.Second, time.Millisecond,
		"the stuck alert raised before the restart is cleared")
}

// A clear of the stuck alert that fails (the alert store down) is tried
// again at the next evaluation, not left firing until the next term.
func TestController_AFailedStuckClearIsTriedAgain(t *testing.T) {
	h := stuckHarness(t)
	h.mgr.setFail(nil)
	h.alerts.mu.Lock()
	h.alerts.failClears, h.alerts.clears = 1, nil
	h.alerts.mu.Unlock()
	h.step()
	require.False(t, h.cleared(RuleRootRotationStuck), "the clear failed")
	h.step()
	require.True(t, h.cleared(RuleRootRotationStuck), "and is tried again")
}

// A restart in phase 3 after the switch happened but before it was
// journaled does not mint a second intermediate under B.
func TestController_SwitchIsNotRepeatedAfterARestart(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.issue("01", 24*time.Hour)
	h.start()
	h.step()
	_, err := h.c.Advance(ctx, "op")
	require.NoError(t, err)
	h.requirePhase(PhaseSwitch)
	// The switch, as if meshca died right after it.
	_, err = h.mgr.RotateNow(ctx, "switch")
	require.NoError(t, err)
	require.Equal(t, 2, h.mgr.rotations)
	h.restart()
	h.requirePhase(PhaseSwitch)
	h.step()
	h.requirePhase(PhaseWaitTTL)
	require.Equal(t, 0, h.mgr.rotations, "the restarted manager did not rotate again")
}

// Once done, a restart with the configuration still naming A keeps B:
// the journal wins, and the status says which keys to update.
func TestController_DoneSurvivesARestartWithTheOldConfiguration(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.start()
	h.step()
	_, err := h.c.Advance(ctx, "op")
	require.NoError(t, err)
	h.step() // no leaf under A: phases 3 to 5 at once
	h.requirePhase(PhaseDone)

	h.restart()
	h.requirePhase(PhaseDone)
	roots, err := h.src.RootSource().Roots(ctx)
	require.NoError(t, err)
	require.Equal(t, []*x509.Certificate{h.b.cert}, roots)
	st := h.c.RotationStatus()
	require.Contains(t, st.Waiting, "set root.file.rootCert "+h.b.spec.File.RootCert+" and root.file.rootKey "+h.b.spec.File.RootKey)
	// Minting goes to B; the root CRL is B's.
	_, err = h.mgr.RotateNow(ctx, "after")
	require.NoError(t, err)
	require.NoError(t, h.mgr.bundle.Cert.CheckSignatureFrom(h.b.cert))
	rc, _, err := h.src.RootSource().(root.RootKeyHolder).SigningRoot()
	require.NoError(t, err)
	require.True(t, rc.Equal(h.b.cert))

	// With the configuration naming B, meshca takes it as it is.
	h.a = h.b
	h.restart()
	require.Equal(t, PhaseIdle, h.src.Phase())
	require.Equal(t, "done", h.c.RotationStatus().Phase)
	require.Empty(t, h.c.RotationStatus().Waiting)
}

// A switch whose intermediate is not under B (an intermediate manager
// that activated something else) does not move on: the old root must
// not leave while the signer chains to it.
func TestController_SwitchMustEndUnderTheNewRoot(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.issue("01", 24*time.Hour)
	h.start()
	h.step()
	h.mgr.src = h.src.Old() // the manager mints under A whatever the phase
	_, err := h.c.Advance(ctx, "op")
	require.NoError(t, err)
	h.step()
	h.requirePhase(PhaseSwitch)
	require.Contains(t, h.c.RotationStatus().Problem, "does not chain to the new root")
}

// Revoked certificates are no workload's to wait for: Istio's proxies
// refuse them through ca-crl.pem already, and everyone does once the old
// root is gone. Phase 2 and phase 4 count neither a revoked leaf nor the
// leaves of a revoked intermediate. Before, they waited for them to
// expire.
func TestController_RevokedCertificatesDoNotHoldTheRotation(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.issue("01", 24*time.Hour)
	h.issueTo("02", "spiffe://cluster.local/ns/default/sa/y", 24*time.Hour)
	_, err := h.st.Revoke(ctx, []store.Revocation{{Serial: "01", Kind: store.KindLeaf, Generation: h.mgr.active, Known: true, Reason: store.ReasonKeyCompromise, RevokedAt: h.clk.Now()}})
	require.NoError(t, err)

	h.start()
	h.step()
	h.requirePhase(PhaseWaitWorkloads)
	require.Equal(t, "1 of 1 unexpired workload certificates were issued before both roots were published; 1 of 1 workload identities got none since", h.c.RotationStatus().Waiting,
		"01 is revoked: only 02 (sa/y) counts")
	_, err = h.st.Revoke(ctx, []store.Revocation{{Serial: "02", Kind: store.KindLeaf, Generation: h.mgr.active, Known: true, Reason: store.ReasonSuperseded, RevokedAt: h.clk.Now()}})
	require.NoError(t, err)
	h.clk.Step(12*time.Hour + 10*time.Minute) // past the minimum wait
	old := h.mgr.active
	h.issueTo("04", "spiffe://cluster.local/ns/default/sa/z", 24*time.Hour) // under A's intermediate, with both roots
	h.step()
	require.Equal(t, 2, h.mgr.rotations, "switched: every unexpired certificate from before is revoked")
	h.requirePhase(PhaseWaitTTL)
	require.Equal(t, "1 unexpired leaf certificates were issued by intermediates under the old root", h.c.RotationStatus().Waiting, "04; 01 and 02 are revoked")

	// Revoking A's intermediate revokes 04 with it.
	gens, err := h.st.ListGenerations(ctx)
	require.NoError(t, err)
	require.Equal(t, old, gens[0].ID)
	c, err := x509.ParseCertificate(gens[0].CertDER)
	require.NoError(t, err)
	_, err = h.st.Revoke(ctx, []store.Revocation{{Serial: hex.EncodeToString(c.SerialNumber.Bytes()), Kind: store.KindIntermediate, Generation: old, Known: true,
		Reason: store.ReasonSuperseded, RevokedAt: h.clk.Now(), NotAfter: c.NotAfter}})
	require.NoError(t, err)
	h.step()
	h.requirePhase(PhaseDone)
}

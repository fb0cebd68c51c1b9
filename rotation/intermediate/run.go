package intermediate

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/rotation"
)

// maxWait bounds how long Run sleeps between evaluations, so that a
// clock jump (a suspended host) is noticed.
const maxWait = time.Hour

// Run drives the rotation until ctx ends: it prepares the successor at
// intermediate.prepareThreshold of the active intermediate's lifetime,
// activates it at intermediate.activateThreshold, drops retired
// generations whose grace period ended, and redelivers changes that a
// subscriber failed to apply. Failures are retried with backoff and
// reported in RotationStatus (Stuck, Problem). Call Start first.
func (m *Manager) Run(ctx context.Context) {
	for {
		m.mu.Lock()
		m.evaluate(ctx)
		d := m.waitLocked()
		m.updateStatus()
		m.lastEval.Store(m.clk.Now().UnixNano())
		m.mu.Unlock()
		t := m.clk.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		case <-m.wake:
			t.Stop()
		}
	}
}

// evaluate does what is due now.
func (m *Manager) evaluate(ctx context.Context) {
	if m.active == nil {
		return
	}
	m.checkRevoked(ctx)
	if _, lead := m.leading(); !lead {
		m.led = false
		m.follow(ctx)
		return
	}
	if !m.led && m.leader != nil {
		// Just took the Lease: resume from what the previous holder left
		// in the store, not from what this replica last followed.
		if err := m.reload(ctx); err != nil {
			m.fail(err)
			return
		}
		m.led = true
	}
	now := m.clk.Now()
	if m.waitingToRetry(ctx, now) {
		return
	}
	if dropped := m.expireRetained(ctx, now); dropped {
		m.notify(ctx, rotation.Change{Active: m.active, Retained: m.retainedMaterial(), Reason: rotation.ReasonRetired})
		if m.pending != nil {
			return
		}
	}
	if !m.src.Capabilities().Mint {
		m.succeed()
		return
	}
	if m.revoked != "" {
		// The active intermediate is revoked under this replica
		// (checkRevoked): the lineage is being cut off, and neither a
		// successor minted now nor the prepared one (which a fresh
		// successor would replace if it is revoked too) may hand it a CA
		// key. The report stands until the operator rotates.
		return
	}
	switch {
	case m.next == nil && !now.Before(m.prepareAt()):
		if err := m.prepareLocked(ctx, false); err != nil {
			m.fail(err)
			return
		}
		if now.Before(m.activateAt()) {
			m.lastSuccess(now)
			m.succeed()
			return
		}
		fallthrough
	case m.next != nil && !now.Before(m.activateAt()):
		c, err := m.activateLocked(ctx)
		if err != nil {
			m.fail(err)
			return
		}
		m.succeed()
		m.notify(ctx, c)
		return
	}
	m.succeed()
}

// checkRevoked records, for the status, whether the store now records
// the active intermediate as revoked. crl.Revoker refuses the active
// generation of every lineage its own replica runs, so this happens when a
// replica whose configuration no longer runs this lineage revoked it (a
// plug-in cluster or separate signer being cut off) while this replica
// still runs it. meshca does not mint a successor by itself here: the
// lineage is being cut off, and a new intermediate for a compromised
// cluster would hand its cacerts a fresh CA key. The rotation reports
// stuck (meshca_rotation_stuck, MeshCARotationStuck) with what to do, until
// the replica runs the new configuration or the operator rotates. A store
// error leaves the last finding; m.mu is held.
func (m *Manager) checkRevoked(ctx context.Context) {
	err := m.loader.CheckStillUnrevoked(ctx, m.active)
	var unusable *authority.UnusableError
	switch {
	case err == nil:
		m.revoked, m.revokedOf = "", 0
	case !errors.As(err, &unusable):
		return
	default:
		was := m.revoked
		m.revokedOf = m.active.Generation
		m.revoked = fmt.Sprintf("the active intermediate (generation %d) is recorded as revoked, most likely by a replica whose configuration no longer runs this lineage, and this replica still signs under it: "+
			"run the same configuration on every replica, or, if this lineage is to keep running, rotate it (meshca rotate intermediate%s; for root.file.cacertsDir, install a new intermediate and restart)",
			m.active.Generation, signerFlag(m.loader.Signer))
		if was == "" {
			m.log.Error("the active intermediate is revoked; this replica still signs under it", "generation", m.active.Generation, "problem", m.revoked)
		}
	}
}

// signerFlag is the --signer flag of `meshca rotate intermediate` for the
// lineage signer ("" for the default one).
func signerFlag(signer string) string {
	if signer == "" {
		return ""
	}
	return " --signer " + signer
}

// waitLocked is how long Run sleeps before the next evaluation.
func (m *Manager) waitLocked() time.Duration {
	now := m.clk.Now()
	if _, lead := m.leading(); !lead {
		// A follower acts on no threshold: it reads the store every
		// interval (a threshold in the past would wake it at once,
		// again and again).
		return m.followEvery
	}
	if m.failures != nil {
		return m.capFollow(m.retryAt.Sub(now))
	}
	next := now.Add(maxWait)
	// With the active intermediate revoked the thresholds are not acted
	// on (evaluate): they are no reason to wake.
	if m.active != nil && m.src.Capabilities().Mint && m.revoked == "" {
		due := m.prepareAt()
		if m.next != nil {
			due = m.activateAt()
		}
		if due.Before(next) {
			next = due
		}
	}
	for _, r := range m.retained {
		if r.until.Before(next) {
			next = r.until
		}
	}
	if d := next.Sub(now); d > 0 {
		return m.capFollow(d)
	}
	return 0
}

// capFollow bounds a wait by the follow interval when there is a Leader:
// a follower reads the store again, and a replica that has just taken the
// Lease starts the rotation steps, within one interval.
func (m *Manager) capFollow(d time.Duration) time.Duration {
	if m.leader != nil && d > m.followEvery {
		return m.followEvery
	}
	return d
}

// prepareAt and activateAt are the thresholds of the active intermediate.
func (m *Manager) prepareAt() time.Time {
	return authority.RenewalTime(m.active.Bundle.Cert, m.cfg.Intermediate.PrepareThreshold)
}

func (m *Manager) activateAt() time.Time {
	return authority.RenewalTime(m.active.Bundle.Cert, m.cfg.Intermediate.ActivateThreshold)
}

// fail records a failed step and schedules its retry with backoff.
func (m *Manager) fail(err error) {
	if m.failures == nil {
		b := retryBackoff()
		m.failures = &b
	}
	d := m.failures.Step()
	m.retryAt = m.clk.Now().Add(d)
	m.problem = err.Error()
	m.log.Warn("intermediate rotation step failed; retrying", "retry_in", d, "error", err)
	if errors.Is(err, root.ErrUnavailable) {
		m.problem = "the root source is unavailable: " + err.Error()
	}
}

// succeed ends a failure streak.
func (m *Manager) succeed() {
	if m.pending != nil {
		return
	}
	m.failures, m.problem = nil, ""
}

func (m *Manager) lastSuccess(t time.Time) { m.lastOK = t }

// waitingToRetry reports whether a failed step's retry is not due yet at
// now, or a change some subscribers failed to apply is still pending after
// redelivering it; m.mu is held.
func (m *Manager) waitingToRetry(ctx context.Context, now time.Time) bool {
	if m.failures != nil && now.Before(m.retryAt) {
		return true
	}
	if m.pending != nil {
		m.deliver(ctx, m.pending.change, m.pending.subs)
		return m.pending != nil
	}
	return false
}

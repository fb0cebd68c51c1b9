package intermediate

import (
	"fmt"
	"time"

	"github.com/meshca/meshca/rotation"
)

// Phases of the intermediate rotation: the Status.Phase names and their
// PhaseCode, the value of meshca_rotation_phase{ca="intermediate"}.
const (
	// PhaseIdle (0): the active intermediate signs; its successor is
	// prepared at intermediate.prepareThreshold (Status.Next).
	PhaseIdle = "idle"
	// PhasePreparing (1): past the prepare threshold, the successor is
	// being minted and verified (the phase stays while that fails: Stuck).
	PhasePreparing = "preparing"
	// PhasePrepared (2): a verified successor is in the next slot; it
	// becomes active at intermediate.activateThreshold (Status.Next).
	PhasePrepared = "prepared"
	// PhaseActivating (3): the successor is active; a subscriber (the
	// Istio endpoint, the trust publisher, ...) has not applied the change
	// yet and is retried.
	PhaseActivating = "activating"
	// PhasePreIssued (4): a pre-issued intermediate (root.file.cacertsDir)
	// signs; meshca cannot rotate it. Stuck, with a Problem, once it is
	// past intermediate.activateThreshold.
	PhasePreIssued = "pre-issued"
)

var phaseCodes = map[string]int{PhaseIdle: 0, PhasePreparing: 1, PhasePrepared: 2, PhaseActivating: 3, PhasePreIssued: 4}

// PhaseCode is the number of a phase name.
func PhaseCode(phase string) int { return phaseCodes[phase] }

// RotationStatus implements rotation.Reporter.
func (m *Manager) RotationStatus() rotation.Status { return *m.status.Load() }

// updateStatus recomputes the status; m.mu is held.
func (m *Manager) updateStatus() {
	m.snapshot()
	now := m.clk.Now()
	s := rotation.Status{CA: rotation.IntermediateCA(m.loader.Signer), LastSuccess: m.lastOK, Problem: m.problem, Stuck: m.failures != nil}
	switch {
	case m.active == nil:
		s.Phase = PhaseIdle
	case !m.src.Capabilities().Mint:
		s.Phase = PhasePreIssued
		if due := m.activateAt(); !now.Before(due) {
			s.Stuck = true
			s.Problem = fmt.Sprintf("the pre-issued intermediate (generation %d, expires %s) passed intermediate.activateThreshold at %s and meshca cannot rotate it: put a new intermediate in root.file.cacertsDir and restart meshca, or configure a root that meshca can mint from",
				m.active.Generation, m.active.Bundle.Cert.NotAfter.UTC().Format(time.RFC3339), due.UTC().Format(time.RFC3339))
		}
	case m.pending != nil && m.pending.change.Reason == rotation.ReasonActivated:
		s.Phase = PhaseActivating
		s.Next = m.retryAt
		s.Waiting = fmt.Sprintf("%d subscriber(s) have not applied the activation of generation %d", len(m.pending.subs), m.pending.change.Active.Generation)
	case m.next != nil:
		s.Phase = PhasePrepared
		s.Next = m.activateAt()
		s.Waiting = fmt.Sprintf("generation %d is prepared and verified; it becomes active at intermediate.activateThreshold", m.next.Generation)
	case !now.Before(m.prepareAt()):
		s.Phase = PhasePreparing
		s.Next = m.retryAt
	default:
		s.Phase = PhaseIdle
		s.Next = m.prepareAt()
	}
	if m.revoked != "" && m.active != nil && m.revokedOf == m.active.Generation {
		s.Stuck, s.Problem = true, m.revoked
	}
	s.PhaseCode = PhaseCode(s.Phase)
	if s.Phase != m.phase {
		m.phase, m.since = s.Phase, now
	}
	s.Since = m.since
	if s.Phase == PhaseIdle && m.lastOK.IsZero() {
		s.Since = time.Time{}
	}
	m.status.Store(&s)
}

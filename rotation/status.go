// Package rotation owns the lifecycle of meshca's CA certificates after
// they are issued: it watches their expiry (inventory/), raises and
// delivers alerts (alert/), rotates the signing intermediate
// (intermediate/) and drives the three-phase root rotation
// (rootrotation/). This file holds the one type they share: the rotation
// state that each rotating controller reports, which the metrics
// (meshca_rotation_phase, meshca_rotation_last_success_timestamp_seconds),
// the "rotation stuck" alert rule and meshca status read.
//
// rotation/ must not be imported by ca/ or the store: dependencies flow
// from the front doors and cmd/ to rotation/, and from rotation/ to ca/
// and the store.
package rotation

import (
	"strings"
	"time"
)

// CA names, the values of the ca label of the rotation metrics.
const (
	CAIntermediate = "intermediate"
	CARoot         = "root"
)

// IntermediateCA is the CA name of a signer lineage's intermediate
// rotation: CAIntermediate for the default signer, and
// "intermediate:<signer>" for a signer with its own intermediate
// (authentication.certSigners, whose names the configuration validated).
func IntermediateCA(signer string) string {
	if signer == "" {
		return CAIntermediate
	}
	return CAIntermediate + ":" + signer
}

// KnownCA reports whether ca is a CA name meshca's controllers report:
// CARoot or an IntermediateCA.
func KnownCA(ca string) bool {
	return ca == CARoot || ca == CAIntermediate || strings.HasPrefix(ca, CAIntermediate+":") && len(ca) > len(CAIntermediate)+1
}

// Status is one rotating controller's state.
type Status struct {
	// CA is what rotates: CARoot or an IntermediateCA.
	CA string `json:"ca"`
	// Phase is the controller's phase name (e.g. "idle", "prepared",
	// "publish-both-roots"); PhaseCode is its number, the value of
	// meshca_rotation_phase{ca}. Each controller documents its phases; 0
	// always means no rotation in progress.
	Phase     string `json:"phase"`
	PhaseCode int    `json:"phaseCode"`
	// Since is when the current phase began (zero when idle and never rotated).
	Since time.Time `json:"since,omitzero"`
	// Next is when the controller expects to act next (prepare, activate,
	// advance a phase); zero when it waits on something else.
	Next time.Time `json:"next,omitzero"`
	// Waiting says, for a person, what the controller is waiting for
	// ("3 of 412 workload certificates still chain only to the old root").
	Waiting string `json:"waiting,omitempty"`
	// Paused is set when an operator paused the rotation.
	Paused bool `json:"paused,omitempty"`
	// Stuck is set when the phase has lasted longer than it should, or the
	// last attempt failed and is being retried; Problem says why.
	Stuck   bool   `json:"stuck,omitempty"`
	Problem string `json:"problem,omitempty"`
	// LastSuccess is when the last rotation step completed (zero if never).
	LastSuccess time.Time `json:"lastSuccess,omitzero"`
}

// Reporter is implemented by every rotating controller.
type Reporter interface {
	RotationStatus() Status
}

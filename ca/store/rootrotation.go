package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// MaxRootRotationBytes bounds one encoded root-rotation record: two roots,
// a source description and a bounded history fit well within it.
const MaxRootRotationBytes = 1 << 20

// EncodeRootRotation validates r and encodes it as every store keeps it;
// an invalid or oversized record is refused and nothing is written.
func EncodeRootRotation(r RootRotation) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	v, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	if len(v) > MaxRootRotationBytes {
		return nil, fmt.Errorf("root rotation %s: record of %d bytes is over %d", r.ID, len(v), MaxRootRotationBytes)
	}
	return v, nil
}

// MaxRootRotationHistory bounds RootRotation.History: a rotation has a
// handful of phases; pauses, resumes and forced advances add an entry each.
const MaxRootRotationHistory = 256

// RootRotation is the durable journal of one orchestrated root rotation
// (old roots A -> A and B -> B). The rotation controller writes it before
// each step it takes, so that a restarted meshca resumes exactly where the
// last one stopped. The store keeps one current record; a finished
// rotation stays until the next one replaces it.
type RootRotation struct {
	// ID names the rotation (e.g. "root-20261205T170000Z").
	ID string `json:"id"`
	// Phase is the controller's phase name; the store does not interpret it.
	Phase string `json:"phase"`
	// OldRootsDER are the roots in force when the rotation began (A).
	OldRootsDER [][]byte `json:"oldRootsDER"`
	// NewRootDER is the new root (B).
	NewRootDER []byte `json:"newRootDER"`
	// NewRootSource describes where B's key is (the root section of the
	// configuration, JSON): file paths or a Vault mount and issuer; never
	// key material.
	NewRootSource []byte `json:"newRootSource"`
	// OldRootSource is the root section that named A when the rotation
	// began (JSON), so that a restart finds A even when the configuration
	// already names B.
	OldRootSource []byte    `json:"oldRootSource,omitempty"`
	StartedAt     time.Time `json:"startedAt"`
	// PhaseStartedAt is when Phase began.
	PhaseStartedAt time.Time `json:"phaseStartedAt"`
	// Paused is set while an operator has paused the rotation.
	Paused bool `json:"paused,omitempty"`
	// Waits are the per-phase wait settings fixed when the rotation began.
	Waits RootRotationWaits `json:"waits"`
	// Error is the last failure of the current phase's action; empty after
	// a success.
	Error string `json:"error,omitempty"`
	// History lists the transitions, oldest first.
	History []RootRotationEvent `json:"history,omitempty"`
}

// RootRotationWaits bound the two waiting phases.
type RootRotationWaits struct {
	// WorkloadsMin and WorkloadsMax bound the wait for the workloads to
	// hold certificates that carry both roots (Istio's documentation:
	// about half the workload certificate TTL).
	WorkloadsMin time.Duration `json:"workloadsMin"`
	WorkloadsMax time.Duration `json:"workloadsMax"`
	// TTLMax bounds the wait for the last leaf under the old root to
	// expire: the longest workload certificate TTL.
	TTLMax time.Duration `json:"ttlMax"`
}

// RootRotationEvent is one entry of RootRotation.History.
type RootRotationEvent struct {
	At time.Time `json:"at"`
	// Phase is the phase entered (or the current one, for pause/resume).
	Phase string `json:"phase"`
	// Event is what happened: "start", "enter", "pause", "resume",
	// "advance" (forced), "done".
	Event string `json:"event"`
	// By says who caused it: "controller" or the admin requester.
	By     string `json:"by,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// Validate checks what every backend requires of a record.
func (r RootRotation) Validate() error {
	switch {
	case r.ID == "":
		return errors.New("root rotation: empty id")
	case len(r.ID) > 128:
		return fmt.Errorf("root rotation: id of %d bytes is over 128", len(r.ID))
	case r.Phase == "":
		return fmt.Errorf("root rotation %s: empty phase", r.ID)
	case len(r.OldRootsDER) == 0:
		return fmt.Errorf("root rotation %s: no old root", r.ID)
	case len(r.NewRootDER) == 0:
		return fmt.Errorf("root rotation %s: no new root", r.ID)
	case len(r.History) > MaxRootRotationHistory:
		return fmt.Errorf("root rotation %s: %d history entries is over %d", r.ID, len(r.History), MaxRootRotationHistory)
	}
	return nil
}

// RootRotations keeps the root-rotation journal. Put returns only after
// the record is durable.
type RootRotations interface {
	// GetRootRotation returns the current record or ErrNotFound when no
	// rotation was ever started.
	GetRootRotation(ctx context.Context) (RootRotation, error)
	// PutRootRotation replaces the current record; an invalid r
	// (RootRotation.Validate) is refused and changes nothing. fence is the
	// writer's Lease (the zero Fence: one replica): a write under a fence
	// older than one the store accepted (CheckFence, shared with
	// SwitchGeneration) fails with ErrFenced and changes nothing, so a
	// holder that lost the Lease cannot move the journal its successor
	// resumes.
	PutRootRotation(ctx context.Context, r RootRotation, fence Fence) error
}

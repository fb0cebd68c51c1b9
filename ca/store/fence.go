package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrConflict is matched by the error of a conditional write whose
// condition no longer holds: another replica changed the record first.
var ErrConflict = errors.New("changed by another replica first")

// ErrFenced is matched by the error of a write made under a Fence older
// than one the store has already seen: the writer lost its lease.
var ErrFenced = errors.New("fenced: a newer lease holder has written")

// Fence identifies the holder of the lease under which a singleton job
// writes, with a token that grows with every change of holder (a
// Kubernetes Lease's spec.leaseTransitions). The store remembers the
// highest Fence it has accepted and refuses a write under a lower token,
// or under the same token from another holder: a replica that lost its
// lease and has not noticed yet can no longer write what its successor
// decides. The zero Fence (no lease: one replica) is not checked.
type Fence struct {
	Holder string
	Token  uint64
}

// IsZero reports whether f is the zero Fence.
func (f Fence) IsZero() bool { return f.Holder == "" && f.Token == 0 }

// CheckFence decides a write under f against the last fence the store
// accepted (zero when none): it returns the fence to remember, or an
// error wrapping ErrFenced.
func CheckFence(last, f Fence) (Fence, error) {
	switch {
	case f.IsZero():
		return last, nil
	case f.Token < last.Token:
		return last, fmt.Errorf("lease holder %q with token %d: %w (%q with token %d)", f.Holder, f.Token, ErrFenced, last.Holder, last.Token)
	case f.Token == last.Token && f.Holder != last.Holder && !last.IsZero():
		return last, fmt.Errorf("lease holder %q with token %d: %w (%q with the same token)", f.Holder, f.Token, ErrFenced, last.Holder)
	}
	return f, nil
}

// GenerationSwitcher is implemented by stores whose activation names the
// generation it replaces, for several replicas: a compare-and-set.
type GenerationSwitcher interface {
	// SwitchGeneration makes id the active generation of its signer
	// lineage, as ActivateGeneration does, if and only if replaces is the
	// lineage's active generation (0: none is active) and fence is not
	// older than the last one the store accepted; all in one transaction.
	// It fails with ErrConflict when another generation is active (another
	// replica moved first), with ErrFenced for an old fence, ErrNotFound
	// for an unknown id and ErrRetired for a retired one; nothing changes
	// then. Switching to the generation that is already active succeeds
	// and changes nothing (a retry after a lost reply).
	SwitchGeneration(ctx context.Context, id, replaces uint64, fence Fence, at time.Time) error
}

// SwitchCheck decides a switch to target from the lineage's active
// generation active (0: none): done reports that target is already
// active; err wraps ErrRetired or ErrConflict.
func SwitchCheck(target Generation, active, replaces uint64) (done bool, err error) {
	switch {
	case target.State() == StateRetired:
		return false, fmt.Errorf("activate generation %d (retired at %s): %w", target.ID, target.RetiredAt.UTC().Format(time.RFC3339), ErrRetired)
	case target.Active():
		return true, nil
	case active != replaces && active == 0:
		return false, fmt.Errorf("activate generation %d in place of %d: no generation of lineage %q is active: %w", target.ID, replaces, target.Lineage(), ErrConflict)
	case active != replaces:
		return false, fmt.Errorf("activate generation %d in place of %d: generation %d of lineage %q is active: %w", target.ID, replaces, active, target.Lineage(), ErrConflict)
	}
	return false, nil
}

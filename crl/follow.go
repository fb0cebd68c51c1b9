package crl

import (
	"context"
	"fmt"

	"github.com/meshca/meshca/ca/store"
)

// Follow adds to the revoked set that IsRevoked answers from the
// revocations another replica recorded in a shared store since the last
// call (store Seq order), so that a certificate revoked through the
// holder of the singleton jobs' Lease stops authenticating on this
// replica too, and schedules the rebuild of the CRLs that list them (as
// Revoke does; Run rebuilds them, with CRL numbers from the store).
func (m *Manager) Follow(ctx context.Context) error {
	// From what was read before, not from the highest Seq in the revoked
	// set: a record can be in the set (this replica's own revocation,
	// which Revoke scheduled) while an older one another replica
	// committed is not yet.
	m.mu.Lock()
	since := m.followSeq
	m.mu.Unlock()
	var got []store.Revocation
	err := m.opts.Store.ListRevocations(ctx, since, func(r store.Revocation) bool {
		got = append(got, r)
		return true
	})
	if err != nil {
		return fmt.Errorf("read revocations: %w", err)
	}
	if len(got) == 0 {
		return nil
	}
	// Raising followSeq and adding the records are one critical section:
	// a reload of the set (loadRevoked) in between would take them as
	// read, and find them in the set as if scheduled, so that no rebuild
	// would list them until the next republish.
	m.mu.Lock()
	var fresh []store.Revocation
	for _, r := range got {
		m.followSeq = max(m.followSeq, r.Seq)
		if b, err := SerialBytes(r.Serial); err == nil {
			if _, known := m.revoked[string(b)]; known {
				continue
			}
		}
		fresh = append(fresh, r)
	}
	due := m.scheduleLocked(fresh, false)
	m.mu.Unlock()
	if due {
		m.kickRun()
	}
	if len(fresh) > 0 {
		m.noteTwins(ctx, fresh)
	}
	return nil
}

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
// replica too. It builds no CRL: the holder does.
func (m *Manager) Follow(ctx context.Context) error {
	m.mu.Lock()
	since := m.followSeq
	for _, seq := range m.revoked {
		since = max(since, seq)
	}
	m.mu.Unlock()
	var got []store.Revocation
	err := m.opts.Store.ListRevocations(ctx, since, func(r store.Revocation) bool {
		got = append(got, r)
		return true
	})
	if err != nil {
		return fmt.Errorf("read revocations: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range got {
		m.noteLocked(r)
		m.followSeq = max(m.followSeq, r.Seq)
	}
	return nil
}

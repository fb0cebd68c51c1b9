package crl

import "context"

// RebuildAll rebuilds every scope now, as a scheduled republish does
// (without pruning); for tests that measure one rebuild.
func (m *Manager) RebuildAll(ctx context.Context) error {
	return m.rebuild(ctx, m.allScopes(), true)
}

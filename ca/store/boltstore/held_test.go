package boltstore

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// Held sees, without waiting, a store another Open holds, and releases
// the lock it takes on a free one: an Open after it succeeds.
func TestHeld_TheStoreAnOpenHolds(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meshca.db")
	require.False(t, Held(path), "no file")
	s, err := Open(path)
	require.NoError(t, err)
	require.True(t, Held(path), "held by an open store")
	require.NoError(t, s.Close())
	require.False(t, Held(path), "released")
	s, err = Open(path)
	require.NoError(t, err, "Held released its own lock")
	require.NoError(t, s.Close())
}

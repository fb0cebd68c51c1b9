package boltstore

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/store/storetest"
)

func TestConformanceRootRotations(t *testing.T) {
	storetest.RunRootRotations(t, func(t *testing.T) storetest.RootRotationStore {
		s, err := Open(filepath.Join(t.TempDir(), "meshca.db"))
		require.NoError(t, err)
		return s
	})
}

func TestConformanceRootRotationsRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meshca.db")
	storetest.RunRootRotationsRestart(t, func() storetest.RootRotationStore {
		s, err := Open(path)
		require.NoError(t, err)
		return s
	})
}

func TestConformanceBundleSequences(t *testing.T) {
	storetest.RunBundleSequences(t, func(t *testing.T) storetest.BundleSequenceStore {
		s, err := Open(filepath.Join(t.TempDir(), "meshca.db"))
		require.NoError(t, err)
		return s
	})
	t.Run("Restart", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "meshca.db")
		storetest.RunBundleSequencesRestart(t, func() storetest.BundleSequenceStore {
			s, err := Open(path)
			require.NoError(t, err)
			return s
		})
	})
	storetest.RunRootCRLsShared(t, func(t *testing.T) (storetest.RootCRLStore, storetest.RootCRLStore) {
		s, err := Open(filepath.Join(t.TempDir(), "meshca.db"))
		require.NoError(t, err)
		return s, s // one handle: replicas share a file only through one process
	})
}

func TestConformanceRootCRLs(t *testing.T) {
	storetest.RunRootCRLs(t, func(t *testing.T) storetest.RootCRLStore {
		s, err := Open(filepath.Join(t.TempDir(), "meshca.db"))
		require.NoError(t, err)
		return s
	})
	t.Run("Restart", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "meshca.db")
		storetest.RunRootCRLsRestart(t, func() storetest.RootCRLStore {
			s, err := Open(path)
			require.NoError(t, err)
			return s
		})
	})
	storetest.RunRootCRLsShared(t, func(t *testing.T) (storetest.RootCRLStore, storetest.RootCRLStore) {
		s, err := Open(filepath.Join(t.TempDir(), "meshca.db"))
		require.NoError(t, err)
		return s, s // one handle: replicas share a file only through one process
	})
}

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
}

func TestConformanceRootCRLs(t *testing.T) {
	openAt := func(t *testing.T, path string) *Store {
		s, err := Open(path)
		require.NoError(t, err)
		return s
	}
	storetest.RunRootCRLs(t, func(t *testing.T) storetest.RootCRLStore {
		return openAt(t, filepath.Join(t.TempDir(), "meshca.db"))
	})
	t.Run("Restart", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "meshca.db")
		storetest.RunRootCRLsRestart(t, func() storetest.RootCRLStore { return openAt(t, path) })
	})
	storetest.RunRootCRLsShared(t, func(t *testing.T) (storetest.RootCRLStore, storetest.RootCRLStore) {
		s := openAt(t, filepath.Join(t.TempDir(), "meshca.db"))
		return s, s // one handle: replicas share a file only through one process
	})
}

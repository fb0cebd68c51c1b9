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

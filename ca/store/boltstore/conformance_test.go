package boltstore

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/ca/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := Open(filepath.Join(t.TempDir(), "meshca.db"))
		require.NoError(t, err)
		return s
	})
}

func TestConformanceRestart(t *testing.T) {
	storetest.RunRestart(t, func(t *testing.T) func() store.Store {
		path := filepath.Join(t.TempDir(), "meshca.db")
		return func() store.Store {
			s, err := Open(path)
			require.NoError(t, err)
			return s
		}
	})
}

func TestConformanceShared(t *testing.T) {
	storetest.RunShared(t, func(t *testing.T) (store.Store, store.Store) {
		s, err := Open(filepath.Join(t.TempDir(), "meshca.db"))
		require.NoError(t, err)
		return s, s
	})
}

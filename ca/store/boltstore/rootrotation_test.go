package boltstore

import (
	"context"
	"math/big"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/meshca/meshca/ca/store"
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

// A root CRL record that does not decode (a torn or foreign value) is
// reported by GetRootCRL and replaced by the next KeepRootCRL.
func TestRootCRLs_ARecordThatDoesNotDecodeIsReplaced(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "meshca.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	require.NoError(t, s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketRootCRLs)
		if err != nil {
			return err
		}
		return b.Put([]byte("root"), []byte{7, 1, 2})
	}))
	_, err = s.GetRootCRL(ctx, "root")
	require.ErrorContains(t, err, "root CRL record of 3 bytes does not decode")
	got, err := s.KeepRootCRL(ctx, "root", store.RootCRL{Number: big.NewInt(1), DER: []byte("crl 1")})
	require.NoError(t, err)
	require.Equal(t, "crl 1", string(got))
	der, err := s.GetRootCRL(ctx, "root")
	require.NoError(t, err)
	require.Equal(t, "crl 1", string(der))
}

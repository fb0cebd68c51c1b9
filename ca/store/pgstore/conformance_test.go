package pgstore

import (
	"context"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/ca/store/storetest"
	"github.com/meshca/meshca/test/pgenv"
)

// pg is the real PostgreSQL server of this package's tests.
var pg *pgenv.Env

func TestMain(m *testing.M) { os.Exit(pgenv.RunMain(m, &pg)) }

// openDB opens a store on database db of the test server.
func openDB(t *testing.T, db string) *Store {
	t.Helper()
	s, err := Open(context.Background(), pg.ConnString(db), WithPassword(pg.Password))
	require.NoError(t, err)
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openDB(t, pg.CreateDatabase(t)) })
}

func TestConformanceRestart(t *testing.T) {
	storetest.RunRestart(t, func(t *testing.T) func() store.Store {
		db := pg.CreateDatabase(t)
		return func() store.Store { return openDB(t, db) }
	})
}

func TestConformanceRootRotations(t *testing.T) {
	storetest.RunRootRotations(t, func(t *testing.T) storetest.RootRotationStore { return openDB(t, pg.CreateDatabase(t)) })
	t.Run("Restart", func(t *testing.T) {
		db := pg.CreateDatabase(t)
		storetest.RunRootRotationsRestart(t, func() storetest.RootRotationStore { return openDB(t, db) })
	})
}

func TestConformanceShared(t *testing.T) {
	storetest.RunShared(t, func(t *testing.T) (store.Store, store.Store) {
		db := pg.CreateDatabase(t)
		return openDB(t, db), openDB(t, db)
	})
}

func TestConformanceBundleSequences(t *testing.T) {
	storetest.RunBundleSequences(t, func(t *testing.T) storetest.BundleSequenceStore { return openDB(t, pg.CreateDatabase(t)) })
	t.Run("Restart", func(t *testing.T) {
		db := pg.CreateDatabase(t)
		storetest.RunBundleSequencesRestart(t, func() storetest.BundleSequenceStore { return openDB(t, db) })
	})
	storetest.RunBundleSequencesShared(t, func(t *testing.T) (storetest.BundleSequenceStore, storetest.BundleSequenceStore) {
		db := pg.CreateDatabase(t)
		return openDB(t, db), openDB(t, db)
	})
}

func TestConformanceRootCRLs(t *testing.T) {
	storetest.RunRootCRLs(t, func(t *testing.T) storetest.RootCRLStore { return openDB(t, pg.CreateDatabase(t)) })
	t.Run("Restart", func(t *testing.T) {
		db := pg.CreateDatabase(t)
		storetest.RunRootCRLsRestart(t, func() storetest.RootCRLStore { return openDB(t, db) })
	})
	storetest.RunRootCRLsShared(t, func(t *testing.T) (storetest.RootCRLStore, storetest.RootCRLStore) {
		db := pg.CreateDatabase(t)
		return openDB(t, db), openDB(t, db)
	})
}

// TestConformanceShared_UnderARepeatableReadDefault: a database whose
// default isolation is REPEATABLE READ would fail replicas that contend
// for one row with serialization errors (the store's transactions are
// written for READ COMMITTED); every session of the store sets it.
func TestConformanceShared_UnderARepeatableReadDefault(t *testing.T) {
	storetest.RunShared(t, func(t *testing.T) (store.Store, store.Store) {
		db := pg.CreateDatabase(t)
		require.NoError(t, pg.Exec(context.Background(), db, "ALTER DATABASE "+db+" SET default_transaction_isolation = 'repeatable read'"))
		return openDB(t, db), openDB(t, db)
	})
}

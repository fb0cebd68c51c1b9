package boltstore

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/ca/store/storetest"
)

// writeV1Store writes a store in the layout of schema version 1 (the
// buckets meta, issuances, issuances_by_expiry and generations, JSON
// records by serial, expiry keys of NotAfter seconds || serial), as the
// code before the issuance indexes wrote it, with bbolt directly.
func writeV1Store(t *testing.T, path string, recs []store.Issuance) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucket([]byte("meta"))
		require.NoError(t, err)
		require.NoError(t, meta.Put([]byte("schema_version"), u64(1)))
		is, err := tx.CreateBucket([]byte("issuances"))
		require.NoError(t, err)
		exp, err := tx.CreateBucket([]byte("issuances_by_expiry"))
		require.NoError(t, err)
		gens, err := tx.CreateBucket([]byte("generations"))
		require.NoError(t, err)
		g, err := json.Marshal(store.Generation{ID: 1, Source: "file-minted", CreatedAt: t0})
		require.NoError(t, err)
		require.NoError(t, gens.Put(u64(1), g))
		_, err = gens.NextSequence()
		require.NoError(t, err)
		for _, r := range recs {
			k, err := serialKey(r.Serial)
			require.NoError(t, err)
			v, err := json.Marshal(r)
			require.NoError(t, err)
			require.NoError(t, is.Put(k, v))
			require.NoError(t, exp.Put(expiryKey(r.NotAfter, k), nil))
		}
		return nil
	}))
	require.NoError(t, db.Close())
}

func TestOpen_MigratesAVersion1StoreAndIndexesItsRecords(t *testing.T) {
	chunk := migrateChunk
	migrateChunk = 7 // several migration transactions
	t.Cleanup(func() { migrateChunk = chunk })

	path := filepath.Join(t.TempDir(), "meshca.db")
	var recs []store.Issuance
	for i := range 50 {
		recs = append(recs, storetest.Issuance(i, t0.Add(time.Duration(i)*time.Hour)))
	}
	writeV1Store(t, path, recs)

	s, err := Open(path)
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.db.View(func(tx *bolt.Tx) error {
		require.Equal(t, u64(SchemaVersion), tx.Bucket(bucketMeta).Get(keySchema))
		// Every expiry entry holds its record's generation and identity.
		for _, r := range recs {
			k, _ := serialKey(r.Serial)
			require.Equal(t, expiryValue(r.Generation, r.Identity), tx.Bucket(bucketExpiry).Get(expiryKey(r.NotAfter, k)), r.Serial)
		}
		require.Equal(t, len(recs), tx.Bucket(bucketExpiry).Stats().KeyN)
		return nil
	}))
	ctx := context.Background()
	want := map[string][]string{}
	wantGen := map[uint64][]string{}
	for _, r := range recs {
		want[r.Identity] = append(want[r.Identity], r.Serial)
		wantGen[r.Generation] = append(wantGen[r.Generation], r.Serial)
	}
	require.Len(t, want, 3)
	for id, serials := range want {
		require.Equal(t, serials, collect(t, func(fn func(store.Issuance) bool) error {
			return s.ListIssuancesByIdentity(ctx, id, fn)
		}), id)
	}
	for g, serials := range wantGen {
		require.Equal(t, serials, collect(t, func(fn func(store.Issuance) bool) error {
			return s.ListIssuancesByGeneration(ctx, g, fn)
		}), "generation %d", g)
	}
	gens, err := s.ListGenerations(ctx)
	require.NoError(t, err)
	require.Len(t, gens, 1, "the generations survive the migration")

	// The migrated store works as a new one: prune keeps the indexes,
	// revocations and CRL numbers start.
	n, err := s.PruneIssuances(ctx, t0.Add(48*time.Hour))
	require.NoError(t, err)
	require.Equal(t, 48, n)
	require.Equal(t, []string{recs[49].Serial}, collect(t, func(fn func(store.Issuance) bool) error {
		return s.ListIssuancesByIdentity(ctx, recs[49].Identity, fn)
	}))
	require.Equal(t, []string{recs[49].Serial}, collect(t, func(fn func(store.Issuance) bool) error {
		return s.ListIssuancesByGeneration(ctx, recs[49].Generation, fn)
	}), "the prune deleted the generation entries the migration wrote")
	require.NoError(t, s.db.View(func(tx *bolt.Tx) error {
		require.Equal(t, 2, tx.Bucket(bucketByGeneration).Stats().KeyN, "records 48 and 49 remain")
		return nil
	}))
	cut, err := s.NextCRLNumber(ctx, "gen-1")
	require.NoError(t, err)
	require.Equal(t, uint64(1), cut.Number)
	rv, err := s.Revoke(ctx, []store.Revocation{storetest.Revocation(1, t0)})
	require.NoError(t, err)
	require.Equal(t, uint64(1), rv[0].Seq)
}

// An interrupted migration leaves version 1: the next Open indexes again.
func TestOpen_AMigrationIsRedoneUntilItCompletes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meshca.db")
	recs := []store.Issuance{storetest.Issuance(0, t0), storetest.Issuance(1, t0)}
	writeV1Store(t, path, recs)
	// Half a migration: the buckets exist, record 0 is indexed, the version is 1.
	db, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			_, err := tx.CreateBucketIfNotExists(b)
			require.NoError(t, err)
		}
		k, _ := serialKey(recs[0].Serial)
		ek, ev, gk := indexEntries(k, recs[0].NotAfter.Unix(), recs[0].Generation, recs[0].Identity)
		require.NoError(t, tx.Bucket(bucketExpiry).Put(ek, ev))
		return tx.Bucket(bucketByGeneration).Put(gk, nil)
	}))
	require.NoError(t, db.Close())

	s, err := Open(path)
	require.NoError(t, err)
	defer s.Close()
	for _, r := range recs {
		require.Equal(t, []string{r.Serial}, collect(t, func(fn func(store.Issuance) bool) error {
			return s.ListIssuancesByIdentity(context.Background(), r.Identity, fn)
		}))
		require.Equal(t, []string{r.Serial}, collect(t, func(fn func(store.Issuance) bool) error {
			return s.ListIssuancesByGeneration(context.Background(), r.Generation, fn)
		}))
	}
}

func collect(t *testing.T, list func(func(store.Issuance) bool) error) []string {
	t.Helper()
	var out []string
	require.NoError(t, list(func(r store.Issuance) bool {
		out = append(out, r.Serial)
		return true
	}))
	return out
}

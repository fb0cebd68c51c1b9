package boltstore

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/meshca/meshca/ca/store"
)

var t0 = time.Date(2026, time.May, 1, 12, 0, 0, 0, time.UTC)

func openStore(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "data", "meshca.db")
	s, err := Open(path)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s, path
}

func record(i int, notAfter time.Time) store.Issuance {
	return store.Issuance{
		Serial:      fmt.Sprintf("%032x", i+1),
		Identity:    fmt.Sprintf("spiffe://cluster.local/ns/default/sa/sa%d", i),
		NotBefore:   notAfter.Add(-24 * time.Hour),
		NotAfter:    notAfter,
		Fingerprint: fmt.Sprintf("%064x", i),
		Profile:     "classical",
		Requester:   "grpc:test",
		Generation:  1,
		IssuedAt:    notAfter.Add(-24 * time.Hour),
	}
}

// putAll stores recs concurrently, as signing does, so that they share fsyncs.
func putAll(t *testing.T, s *Store, recs []store.Issuance) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(recs))
	sem := make(chan struct{}, 200)
	for _, r := range recs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs <- s.PutIssuance(context.Background(), r)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

func listAll(t *testing.T, s *Store) []store.Issuance {
	t.Helper()
	var out []store.Issuance
	require.NoError(t, s.ListIssuances(context.Background(), func(r store.Issuance) bool {
		out = append(out, r)
		return true
	}))
	return out
}

func TestIssuances_PutGetListRoundTrip(t *testing.T) {
	s, _ := openStore(t)
	ctx := context.Background()
	want := []store.Issuance{record(2, t0), record(0, t0.Add(time.Hour)), record(1, t0.Add(2*time.Hour))}
	for _, r := range want {
		require.NoError(t, s.PutIssuance(ctx, r))
	}
	got, err := s.GetIssuance(ctx, want[1].Serial)
	require.NoError(t, err)
	requireSameRecord(t, want[1], got)

	list := listAll(t, s)
	require.Len(t, list, 3)
	// Serial order: record(0) < record(1) < record(2).
	requireSameRecord(t, want[1], list[0])
	requireSameRecord(t, want[2], list[1])
	requireSameRecord(t, want[0], list[2])

	var first []string
	require.NoError(t, s.ListIssuances(ctx, func(r store.Issuance) bool {
		first = append(first, r.Serial)
		return false
	}))
	require.Equal(t, []string{want[1].Serial}, first, "returning false stops the walk")
}

func requireSameRecord(t *testing.T, want, got store.Issuance) {
	t.Helper()
	require.Equal(t, want.Serial, got.Serial)
	require.Equal(t, want.Identity, got.Identity)
	require.True(t, want.NotBefore.Equal(got.NotBefore))
	require.True(t, want.NotAfter.Equal(got.NotAfter))
	require.True(t, want.IssuedAt.Equal(got.IssuedAt))
	require.Equal(t, want.Fingerprint, got.Fingerprint)
	require.Equal(t, want.Profile, got.Profile)
	require.Equal(t, want.Requester, got.Requester)
	require.Equal(t, want.Generation, got.Generation)
}

func TestIssuances_GetMissingIsNotFound(t *testing.T) {
	s, _ := openStore(t)
	_, err := s.GetIssuance(context.Background(), "abcdef")
	require.ErrorIs(t, err, store.ErrNotFound)
}

func TestIssuances_RejectNonHexSerials(t *testing.T) {
	s, _ := openStore(t)
	ctx := context.Background()
	for _, serial := range []string{"", "xyz", "abc"} {
		rec := record(0, t0)
		rec.Serial = serial
		require.ErrorContains(t, s.PutIssuance(ctx, rec), "is not hex", "serial %q", serial)
		_, err := s.GetIssuance(ctx, serial)
		require.ErrorContains(t, err, "is not hex")
	}
}

func TestIssuances_CanceledContextWritesNothing(t *testing.T) {
	s, _ := openStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, s.PutIssuance(ctx, record(0, t0)), context.Canceled)
	require.Empty(t, listAll(t, s))
}

// TestPutIssuance_IsDurableAcrossReopen shows that a closed store reopens
// with its records. It says nothing about fsync (the page cache survives a
// close); TestPutIssuance_FsyncsEachRecordBeforeItIsAcknowledged does.
func TestPutIssuance_IsDurableAcrossReopen(t *testing.T) {
	s, path := openStore(t)
	rec := record(7, t0)
	require.NoError(t, s.PutIssuance(context.Background(), rec))
	require.NoError(t, s.Close())

	s2, err := Open(path)
	require.NoError(t, err)
	defer s2.Close()
	got, err := s2.GetIssuance(context.Background(), rec.Serial)
	require.NoError(t, err)
	requireSameRecord(t, rec, got)
}

func TestPutIssuance_200ConcurrentWritersAllLand(t *testing.T) {
	s, _ := openStore(t)
	recs := make([]store.Issuance, 200)
	for i := range recs {
		recs[i] = record(i, t0.Add(time.Duration(i)*time.Minute))
	}
	putAll(t, s, recs)
	got := listAll(t, s)
	require.Len(t, got, 200)
	for i, r := range got {
		require.Equal(t, recs[i].Serial, r.Serial)
	}
}

func TestPruneIssuances_DeletesExactlyThoseThatExpiredBeforeCutoff(t *testing.T) {
	s, _ := openStore(t)
	ctx := context.Background()
	cutoff := t0
	recs := []store.Issuance{
		record(0, cutoff.Add(-48*time.Hour)),
		record(1, cutoff.Add(-time.Second)),
		record(2, cutoff),                  // not before the cutoff: kept
		record(3, cutoff.Add(time.Second)), // kept
		record(4, cutoff.Add(24*time.Hour)),
	}
	putAll(t, s, recs)

	n, err := s.PruneIssuances(ctx, cutoff)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	var left []string
	for _, r := range listAll(t, s) {
		left = append(left, r.Serial)
	}
	require.Equal(t, []string{recs[2].Serial, recs[3].Serial, recs[4].Serial}, left)
	for _, r := range recs[:2] {
		_, err := s.GetIssuance(ctx, r.Serial)
		require.ErrorIs(t, err, store.ErrNotFound)
	}

	n, err = s.PruneIssuances(ctx, cutoff)
	require.NoError(t, err)
	require.Zero(t, n, "a second pass finds nothing")
}

func TestPruneIssuances_WorksAcrossManyChunks(t *testing.T) {
	s, _ := openStore(t)
	ctx := context.Background()
	const expired, live = 2345, 700
	var recs []store.Issuance
	for i := range expired + live {
		na := t0.Add(-time.Duration(expired-i) * time.Second) // i < expired: before t0
		if i >= expired {
			na = t0.Add(time.Duration(i) * time.Second)
		}
		recs = append(recs, record(i, na))
	}
	putAll(t, s, recs)
	require.Len(t, listAll(t, s), expired+live)

	n, err := s.PruneIssuances(ctx, t0)
	require.NoError(t, err)
	require.Equal(t, expired, n)
	left := listAll(t, s)
	require.Len(t, left, live)
	for _, r := range left {
		require.False(t, r.NotAfter.Before(t0), "record %s expired at %s", r.Serial, r.NotAfter)
	}
	// The expiry index was pruned with the records: nothing is left to find.
	n, err = s.PruneIssuances(ctx, t0.Add(time.Duration(expired+live)*time.Second))
	require.NoError(t, err)
	require.Equal(t, live, n)
	require.Empty(t, listAll(t, s))
	require.NoError(t, s.db.View(func(tx *bolt.Tx) error {
		require.Zero(t, tx.Bucket(bucketExpiry).Stats().KeyN)
		return nil
	}))
}

func TestPruneIssuances_StopsOnCanceledContext(t *testing.T) {
	s, _ := openStore(t)
	putAll(t, s, []store.Issuance{record(0, t0.Add(-time.Hour))})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	n, err := s.PruneIssuances(ctx, t0)
	require.ErrorIs(t, err, context.Canceled)
	require.Zero(t, n)
	require.Len(t, listAll(t, s), 1)
}

func TestOpen_RefusesANewerSchema(t *testing.T) {
	s, path := openStore(t)
	require.NoError(t, s.Close())

	db, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySchema, u64(SchemaVersion+1))
	}))
	require.NoError(t, db.Close())

	_, err = Open(path)
	require.Error(t, err)
	require.Contains(t, err.Error(), "newer")
	require.Contains(t, err.Error(), path)
}

func TestOpen_WritesTheSchemaVersion(t *testing.T) {
	s, _ := openStore(t)
	require.NoError(t, s.db.View(func(tx *bolt.Tx) error {
		require.Equal(t, u64(SchemaVersion), tx.Bucket(bucketMeta).Get(keySchema))
		return nil
	}))
}

const lockHelperEnv = "MESHCA_BOLTSTORE_LOCK_HELPER"

// TestOpen_LockHelper is not a test: TestOpen_SecondProcessIsToldTheStoreIsLocked
// re-executes the test binary to run it as a second meshca process.
func TestOpen_LockHelper(t *testing.T) {
	path := os.Getenv(lockHelperEnv)
	if path == "" {
		return
	}
	_, err := Open(path)
	fmt.Fprintf(os.Stdout, "helper-error: %v\n", err)
}

func TestOpen_SecondProcessIsToldTheStoreIsLocked(t *testing.T) {
	t.Parallel() // bbolt waits out its 2 s lock timeout
	_, path := openStore(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestOpen_LockHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), lockHelperEnv+"="+path)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "helper-error: store "+path+" is locked by another meshca process")
}

func TestOpen_SecondOpenInTheSameProcessIsToldTheStoreIsLocked(t *testing.T) {
	t.Parallel() // bbolt waits out its 2 s lock timeout
	_, path := openStore(t)
	_, err := Open(path)
	require.EqualError(t, err, "store "+path+" is locked by another meshca process; stop it or use another --dir")
	require.ErrorIs(t, err, ErrLocked, "the CLI tells a running serve by errors.Is")
}

func TestOpen_CreatesTheDirectoryAndA0600File(t *testing.T) {
	_, path := openStore(t)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	di, err := os.Stat(filepath.Dir(path))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), di.Mode().Perm())
}

func TestPutIssuance_RefusesADifferentCertificateUnderARecordedSerial(t *testing.T) {
	s, _ := openStore(t)
	ctx := context.Background()
	rec := store.Issuance{Serial: "0abc", Identity: "spiffe://cluster.local/ns/a/sa/b", NotAfter: time.Unix(2000000000, 0).UTC(), Fingerprint: "aa"}
	require.NoError(t, s.PutIssuance(ctx, rec))
	require.NoError(t, s.PutIssuance(ctx, rec), "the same record again is idempotent")
	other := rec
	other.Fingerprint = "bb"
	other.NotAfter = time.Unix(1000000000, 0).UTC()
	require.ErrorIs(t, s.PutIssuance(ctx, other), ErrDuplicateSerial)
	got, err := s.GetIssuance(ctx, "0abc")
	require.NoError(t, err)
	require.Equal(t, rec, got)
	n, err := s.PruneIssuances(ctx, time.Unix(1500000000, 0))
	require.NoError(t, err)
	require.Zero(t, n, "the refused record left no expiry entry behind")
}

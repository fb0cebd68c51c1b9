package boltstore

import (
	"context"
	"encoding/hex"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/meshca/meshca/ca/policy"
	"github.com/meshca/meshca/ca/store"
)

// leafFill is how full the leaf pages of bucket are: bytes in use over
// bytes allocated.
func leafFill(t *testing.T, s *Store, bucket []byte) float64 {
	t.Helper()
	var st bolt.BucketStats
	require.NoError(t, s.db.View(func(tx *bolt.Tx) error {
		st = tx.Bucket(bucket).Stats()
		return nil
	}))
	require.Positive(t, st.LeafAlloc)
	return float64(st.LeafInuse) / float64(st.LeafAlloc)
}

// Records whose serials grow with time (policy.RandomSerial) append at the
// right edge of the issuances bucket and of the generation index; with
// bbolt's default FillPercent of 0.5 every split would leave its left page
// half empty. (The expiry index
// keeps the default: its keys start with NotAfter, and caller-chosen TTLs
// insert in its middle.)
func TestPutIssuance_AppendedRecordsPackTheLeafPages(t *testing.T) {
	s, _ := openStore(t)
	const batches, perBatch = 30, 100
	for b := range batches {
		recs := make([]store.Issuance, perBatch)
		for i := range recs {
			n := b*perBatch + i
			recs[i] = record(n, t0.Add(time.Duration(n)*time.Second))
		}
		putAll(t, s, recs) // concurrent within a batch, as signing is
	}
	require.Len(t, listAll(t, s), batches*perBatch)
	// bbolt's default fill gives exactly 0.50 for both. A record that
	// reaches a later group than a record minted after it splits a full
	// page and leaves a nearly empty one behind: how often depends on
	// the scheduling of the concurrent puts. The generation index's keys
	// are short (about a hundred per page, so few pages), and under -race
	// its fill ranged from 0.72 to 0.95 over 40 runs; the issuances
	// bucket's from 0.88 to 0.91.
	for bucket, atLeast := range map[string]float64{string(bucketIssuances): 0.8, string(bucketByGeneration): 0.6} {
		fill := leafFill(t, s, []byte(bucket))
		require.Greater(t, fill, atLeast, "leaf pages of %s are only %.0f%% full", bucket, 100*fill)
	}
}

// Stores written before serials had a time prefix hold 128-bit random
// serials (of 1 to 16 octets); they are read, listed and pruned together
// with time-ordered ones.
func TestIssuances_RandomAndTimeOrderedSerialsLiveTogether(t *testing.T) {
	s, _ := openStore(t)
	ctx := context.Background()
	old := []string{
		"ff00112233445566778899aabbccddee", // sorts after every time-ordered serial
		"00000000000000000000000000000001", // leading zero octets: Bytes() is shorter
		"7fedcba9876543210fedcba987654321",
		"0123",
	}
	var recs []store.Issuance
	for i, h := range old {
		n, ok := new(big.Int).SetString(h, 16)
		require.True(t, ok)
		r := record(i, t0.Add(time.Duration(i)*time.Hour)) // expires at t0 .. t0+3h
		r.Serial = hex.EncodeToString(n.Bytes())
		recs = append(recs, r)
	}
	for i := range 4 {
		n, err := policy.RandomSerial()
		require.NoError(t, err)
		r := record(10+i, t0.Add(time.Duration(i)*time.Hour+30*time.Minute)) // t0+30m .. t0+3h30m
		r.Serial = hex.EncodeToString(n.Bytes())
		recs = append(recs, r)
	}
	putAll(t, s, recs)
	for _, r := range recs {
		got, err := s.GetIssuance(ctx, r.Serial)
		require.NoError(t, err)
		requireSameRecord(t, r, got)
	}
	require.Len(t, listAll(t, s), 8)

	// Prune what expired before t0+2h: old 0,1 (t0, t0+1h) and new 0,1
	// (t0+30m, t0+1h30m).
	n, err := s.PruneIssuances(ctx, t0.Add(2*time.Hour))
	require.NoError(t, err)
	require.Equal(t, 4, n)
	var left []string
	for _, r := range listAll(t, s) {
		left = append(left, r.Serial)
	}
	require.ElementsMatch(t, []string{recs[2].Serial, recs[3].Serial, recs[6].Serial, recs[7].Serial}, left)
}

// commitGroup commits recs as one group and returns what each was told.
func commitGroup(t *testing.T, s *Store, recs ...store.Issuance) []error {
	t.Helper()
	group := make([]*pendingPut, len(recs))
	for i, r := range recs {
		p, err := newPendingPut(r)
		require.NoError(t, err)
		group[i] = p
	}
	require.NoError(t, s.writes.commit(group))
	refused := make([]error, len(group))
	for i, p := range group {
		refused[i] = p.refused
	}
	return refused
}

// A serial may repeat within one group, beyond the last recorded serial
// (where nothing needs to be looked up) or before it.
func TestCommit_RefusesADifferentCertificateUnderASerialOfTheSameGroup(t *testing.T) {
	s, _ := openStore(t)
	ctx := context.Background()
	a, b := record(1, t0), record(2, t0)
	otherA := a
	otherA.Fingerprint = "bb"
	// An empty bucket: a, then a again (a no-op), then another a (refused).
	require.Equal(t, []error{nil, nil, ErrDuplicateSerial, nil}, commitGroup(t, s, a, a, otherA, b))
	// Before and at the last recorded serial (b).
	otherB := b
	otherB.Fingerprint = "cc"
	require.Equal(t, []error{ErrDuplicateSerial, nil, ErrDuplicateSerial}, commitGroup(t, s, otherA, b, otherB))
	// Beyond it, twice in one group.
	c := record(3, t0)
	otherC := c
	otherC.Identity = "spiffe://cluster.local/ns/x/sa/y"
	require.Equal(t, []error{nil, ErrDuplicateSerial, nil}, commitGroup(t, s, c, otherC, c))

	got := listAll(t, s)
	require.Len(t, got, 3)
	for i, want := range []store.Issuance{a, b, c} {
		requireSameRecord(t, want, got[i])
	}
	n, err := s.PruneIssuances(ctx, t0.Add(time.Second))
	require.NoError(t, err)
	require.Equal(t, 3, n, "one expiry entry per recorded serial")
	require.Empty(t, listAll(t, s))
}

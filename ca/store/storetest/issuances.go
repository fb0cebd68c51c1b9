package storetest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/store"
)

func testIssuancesPutGetList(t *testing.T, s store.Store) {
	ctx := context.Background()
	want := []store.Issuance{Issuance(2, T0), Issuance(0, T0.Add(time.Hour)), Issuance(1, T0.Add(2*time.Hour))}
	for _, r := range want {
		require.NoError(t, s.PutIssuance(ctx, r))
	}
	got, err := s.GetIssuance(ctx, want[1].Serial)
	require.NoError(t, err)
	RequireSameIssuance(t, want[1], got)
	_, err = s.GetIssuance(ctx, Serial(99))
	require.ErrorIs(t, err, store.ErrNotFound)

	list := listIssuances(t, s)
	require.Equal(t, []string{Serial(0), Serial(1), Serial(2)}, serials(list), "serial order")
	var first []string
	require.NoError(t, s.ListIssuances(ctx, func(r store.Issuance) bool {
		first = append(first, r.Serial)
		return false
	}))
	require.Equal(t, []string{Serial(0)}, first, "returning false stops the walk")
}

func testIssuancesDuplicate(t *testing.T, s store.Store) {
	ctx := context.Background()
	rec := Issuance(0, T0)
	require.NoError(t, s.PutIssuance(ctx, rec))
	require.NoError(t, s.PutIssuance(ctx, rec), "the same record again is a no-op")
	other := rec
	other.Fingerprint = fmt.Sprintf("%064x", 77)
	other.Identity = "spiffe://cluster.local/ns/default/sa/intruder"
	require.Error(t, s.PutIssuance(ctx, other), "a different certificate under a recorded serial")
	got, err := s.GetIssuance(ctx, rec.Serial)
	require.NoError(t, err)
	RequireSameIssuance(t, rec, got)
	require.Len(t, listIssuances(t, s), 1)
	require.Empty(t, byIdentity(t, s, other.Identity), "the refused record is not indexed")
	require.Equal(t, []string{rec.Serial}, byIdentity(t, s, rec.Identity))
}

func testIssuancesPrune(t *testing.T, s store.Store) {
	ctx := context.Background()
	for i := range 6 {
		require.NoError(t, s.PutIssuance(ctx, Issuance(i, T0.Add(time.Duration(i)*time.Hour))))
	}
	// Records 0, 1 and 2 expired before the cutoff; 3 expires at it.
	n, err := s.PruneIssuances(ctx, T0.Add(3*time.Hour))
	require.NoError(t, err)
	require.Equal(t, 3, n)
	require.Equal(t, []string{Serial(3), Serial(4), Serial(5)}, serials(listIssuances(t, s)))
	_, err = s.GetIssuance(ctx, Serial(0))
	require.ErrorIs(t, err, store.ErrNotFound)
	n, err = s.PruneIssuances(ctx, T0.Add(3*time.Hour))
	require.NoError(t, err)
	require.Zero(t, n, "a second pass finds nothing")
}

func testIndexByIdentity(t *testing.T, s store.Store) {
	ctx := context.Background()
	for i := range 9 {
		require.NoError(t, s.PutIssuance(ctx, Issuance(i, T0)))
	}
	// An identity that is a prefix of another must not match it.
	long := Issuance(20, T0)
	long.Identity = "spiffe://cluster.local/ns/default/sa/sa1x"
	require.NoError(t, s.PutIssuance(ctx, long))

	require.Equal(t, []string{Serial(1), Serial(4), Serial(7)}, byIdentity(t, s, "spiffe://cluster.local/ns/default/sa/sa1"))
	require.Equal(t, []string{Serial(20)}, byIdentity(t, s, long.Identity))
	require.Equal(t, []string{Serial(0), Serial(3), Serial(6)}, byIdentity(t, s, "spiffe://cluster.local/ns/default/sa/sa0"))
	require.Empty(t, byIdentity(t, s, "spiffe://cluster.local/ns/default/sa/sa"))
	require.Empty(t, byIdentity(t, s, "spiffe://cluster.local/ns/other/sa/nobody"))
	require.Empty(t, byIdentity(t, s, ""))

	n := 0
	require.NoError(t, s.ListIssuancesByIdentity(ctx, "spiffe://cluster.local/ns/default/sa/sa1", func(store.Issuance) bool {
		n++
		return false
	}))
	require.Equal(t, 1, n, "returning false stops the walk")
}

func testIndexByGeneration(t *testing.T, s store.Store) {
	ctx := context.Background()
	for i := range 7 {
		require.NoError(t, s.PutIssuance(ctx, Issuance(i, T0)))
	}
	big := Issuance(30, T0)
	big.Generation = 1<<40 + 1 // same low octets as generation 1
	require.NoError(t, s.PutIssuance(ctx, big))

	require.Equal(t, []string{Serial(0), Serial(2), Serial(4), Serial(6)}, byGeneration(t, s, 1))
	require.Equal(t, []string{Serial(1), Serial(3), Serial(5)}, byGeneration(t, s, 2))
	require.Equal(t, []string{Serial(30)}, byGeneration(t, s, big.Generation))
	require.Empty(t, byGeneration(t, s, 3))
	require.Empty(t, byGeneration(t, s, 0))

	n := 0
	require.NoError(t, s.ListIssuancesByGeneration(ctx, 1, func(store.Issuance) bool {
		n++
		return false
	}))
	require.Equal(t, 1, n, "returning false stops the walk")
}

func testIndexFollowsPrune(t *testing.T, s store.Store) {
	ctx := context.Background()
	for i := range 12 {
		require.NoError(t, s.PutIssuance(ctx, Issuance(i, T0.Add(time.Duration(i)*time.Hour))))
	}
	n, err := s.PruneIssuances(ctx, T0.Add(6*time.Hour))
	require.NoError(t, err)
	require.Equal(t, 6, n)
	require.Equal(t, []string{Serial(6), Serial(9)}, byIdentity(t, s, "spiffe://cluster.local/ns/default/sa/sa0"))
	require.Equal(t, []string{Serial(7), Serial(10)}, byIdentity(t, s, "spiffe://cluster.local/ns/default/sa/sa1"))
	require.Equal(t, []string{Serial(6), Serial(8), Serial(10)}, byGeneration(t, s, 1))
	require.Equal(t, []string{Serial(7), Serial(9), Serial(11)}, byGeneration(t, s, 2))

	// A pruned serial may be recorded again (a new certificate); the
	// index holds it once.
	again := Issuance(0, T0.Add(48*time.Hour))
	require.NoError(t, s.PutIssuance(ctx, again))
	require.Equal(t, []string{Serial(0), Serial(6), Serial(9)}, byIdentity(t, s, again.Identity))
}

func testIndexFollowsConcurrentPuts(t *testing.T, s store.Store) {
	ctx := context.Background()
	const n = 120
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() { errs <- s.PutIssuance(ctx, Issuance(i, T0)) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	want := map[string][]string{}
	wantGen := map[uint64][]string{}
	for i := range n {
		r := Issuance(i, T0)
		want[r.Identity] = append(want[r.Identity], r.Serial)
		wantGen[r.Generation] = append(wantGen[r.Generation], r.Serial)
	}
	for id, ss := range want {
		require.Equal(t, slices.Sorted(slices.Values(ss)), byIdentity(t, s, id), id)
	}
	for g, ss := range wantGen {
		require.Equal(t, slices.Sorted(slices.Values(ss)), byGeneration(t, s, g), "generation %d", g)
	}
}

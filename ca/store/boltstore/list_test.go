package boltstore

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/ca/store/storetest"
)

// ListRevocations reads in chunks and calls fn with no transaction open,
// so that streaming a large CRL holds no read transaction (which would
// block a commit that grows the file) and fn may write to the store.
func TestListRevocations_CallsFnOutsideAnyTransactionAcrossChunks(t *testing.T) {
	chunk := listChunk
	listChunk = 3
	t.Cleanup(func() { listChunk = chunk })
	s, _ := openStore(t)
	ctx := context.Background()
	var recs []store.Revocation
	for i := range 10 {
		recs = append(recs, storetest.Revocation(i, t0.Add(time.Hour)))
	}
	want, err := s.Revoke(ctx, recs)
	require.NoError(t, err)

	var got []uint64
	require.NoError(t, s.ListRevocations(ctx, want[1].Seq, func(r store.Revocation) bool {
		require.Zero(t, s.db.Stats().OpenTxN, "fn runs inside a read transaction")
		got = append(got, r.Seq)
		if len(got) == 1 {
			// A revocation committed during the walk is after its end.
			_, err := s.Revoke(ctx, []store.Revocation{storetest.Revocation(50, t0)})
			require.NoError(t, err)
		}
		return true
	}))
	var wantSeqs []uint64
	for _, r := range want[2:] {
		wantSeqs = append(wantSeqs, r.Seq)
	}
	require.Equal(t, wantSeqs, got)
}

// The index walks read in chunks (entries scanned, records decoded) and
// call fn with no transaction open; a walk across many chunks returns
// exactly the records of the identity or generation.
func TestListIssuancesByIndex_ChunkedOutsideAnyTransaction(t *testing.T) {
	scan, list := scanChunk, listChunk
	scanChunk, listChunk = 4, 2
	t.Cleanup(func() { scanChunk, listChunk = scan, list })
	s, _ := openStore(t)
	ctx := context.Background()
	wantID, wantGen := []string{}, []string{}
	for i := range 40 {
		r := storetest.Issuance(i, t0.Add(time.Duration(i)*time.Minute))
		require.NoError(t, s.PutIssuance(ctx, r))
		if r.Identity == storetest.Issuance(1, t0).Identity {
			wantID = append(wantID, r.Serial)
		}
		if r.Generation == 2 {
			wantGen = append(wantGen, r.Serial)
		}
	}
	for name, tc := range map[string]struct {
		list func(fn func(store.Issuance) bool) error
		want []string
	}{
		"identity": {func(fn func(store.Issuance) bool) error {
			return s.ListIssuancesByIdentity(ctx, storetest.Issuance(1, t0).Identity, fn)
		}, wantID},
		"generation": {func(fn func(store.Issuance) bool) error { return s.ListIssuancesByGeneration(ctx, 2, fn) }, wantGen},
	} {
		var got []string
		require.NoError(t, tc.list(func(r store.Issuance) bool {
			require.Zero(t, s.db.Stats().OpenTxN, "%s: fn runs inside a read transaction", name)
			got = append(got, r.Serial)
			return true
		}), name)
		require.Equal(t, tc.want, got, name)
	}
}

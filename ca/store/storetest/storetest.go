// Package storetest is the conformance suite of store.Store: every backend
// (boltstore, pgstore) runs it, so that the CA, the revocation
// service and the CRL builder can rely on the same semantics whatever
// stores the records.
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { return openEmptyStore(t) })
//	}
package storetest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/store"
)

// T0 is the reference time of the suite's records.
var T0 = time.Date(2026, time.May, 1, 12, 0, 0, 0, time.UTC)

// Run runs the conformance suite. open returns a new, empty store for one
// subtest; the suite closes it.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	run := func(name string, f func(t *testing.T, s store.Store)) {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() { _ = s.Close() })
			f(t, s)
		})
	}
	run("Issuances/PutGetList", testIssuancesPutGetList)
	run("Issuances/SameRecordTwiceIsANoOpADifferentOneIsRefused", testIssuancesDuplicate)
	run("Issuances/PruneDeletesExactlyTheExpired", testIssuancesPrune)
	run("IssuanceIndex/ByIdentity", testIndexByIdentity)
	run("IssuanceIndex/ByGeneration", testIndexByGeneration)
	run("IssuanceIndex/FollowsPrune", testIndexFollowsPrune)
	run("IssuanceIndex/FollowsConcurrentPuts", testIndexFollowsConcurrentPuts)
	run("Revocations/RoundTrip", testRevocationsRoundTrip)
	run("Revocations/RevokingTwiceReturnsTheOriginal", testRevocationsIdempotent)
	run("Revocations/DuplicatesInABatchAreOneRecord", testRevocationsBatchDuplicates)
	run("Revocations/BadInputStoresNothing", testRevocationsBadInput)
	run("Revocations/ListSinceInSeqOrder", testRevocationsListSince)
	run("Revocations/PruneNeverDropsUnexpiredOrUnknownExpiry", testRevocationsPrune)
	run("Revocations/ConcurrentRevokesGetDistinctSeqs", testRevocationsConcurrent)
	run("CRLNumbers/MonotonicPerScopeAndIndependent", testCRLNumbers)
	run("CRLNumbers/BadScopeIsRefused", testCRLNumbersBadScope)
	run("CRLNumbers/ConcurrentAllocationsAreDistinct", testCRLNumbersConcurrent)
	run("CRLNumbers/TheCutIsTheLastRevocationCommitted", testCRLCut)
	run("AlertStates/RoundTrip", testAlertStatesRoundTrip)
	run("AlertStates/BadInputStoresNothing", testAlertStatesBadInput)
	run("Generations/AddedIsPrepared", testGenerationsAddIsPrepared)
	run("Generations/ActivatingAPreparedOneRetiresThePrevious", testGenerationsActivateRetiresThePrevious)
	run("Generations/ASecondPreparedOneStaysPrepared", testGenerationsSecondPreparedStaysPrepared)
	run("Generations/BadActivationChangesNothing", testGenerationsBadActivationChangesNothing)
	run("Generations/AtMostOneActivePerSignerLineage", testGenerationsOneActivePerLineage)
	run("Generations/ActivationNeverRetiresAnotherLineage", testGenerationsActivationKeepsOtherLineages)
	run("Generations/RecordsWithoutASignerAreTheDefaultLineage", testGenerationsDefaultLineage)
	run("Generations/SwitchNamesTheGenerationItReplaces", testSwitchNamesTheGenerationItReplaces)
	run("Generations/SwitchRefusesAnOlderFence", testSwitchRefusesAnOlderFence)
}

// RunRestart checks that what a store acknowledged survives closing and
// reopening it: CRL numbers never repeat, revocation Seqs keep increasing,
// alert states stay as they were written.
// newStore prepares one empty, persistent location and returns a function
// that opens it (called again after each Close).
func RunRestart(t *testing.T, newStore func(t *testing.T) (open func() store.Store)) {
	t.Run("CRLNumbersNeverRepeatAcrossRestarts", func(t *testing.T) {
		open := newStore(t)
		ctx := context.Background()
		seen := map[uint64]bool{}
		var last uint64
		for restart := range 3 {
			s := open()
			for range 3 {
				cut, err := s.NextCRLNumber(ctx, "gen-1")
				require.NoError(t, err)
				n := cut.Number
				require.False(t, seen[n], "restart %d: CRL number %d handed out twice", restart, n)
				require.Greater(t, n, last, "restart %d", restart)
				seen[n], last = true, n
			}
			require.NoError(t, s.Close())
		}
		require.Len(t, seen, 9)
	})
	t.Run("RevocationsSurviveARestart", func(t *testing.T) {
		open := newStore(t)
		ctx := context.Background()
		s := open()
		first, err := s.Revoke(ctx, []store.Revocation{Revocation(1, T0.Add(time.Hour))})
		require.NoError(t, err)
		require.NoError(t, s.Close())

		s = open()
		defer s.Close()
		got, err := s.GetRevocation(ctx, first[0].Serial)
		require.NoError(t, err)
		RequireSameRevocation(t, first[0], got)
		last, err := s.LastRevocationSeq(ctx)
		require.NoError(t, err)
		require.Equal(t, first[0].Seq, last)
		second, err := s.Revoke(ctx, []store.Revocation{Revocation(2, T0.Add(time.Hour))})
		require.NoError(t, err)
		require.Greater(t, second[0].Seq, first[0].Seq)
	})
	t.Run("AlertStatesSurviveARestart", func(t *testing.T) {
		open := newStore(t)
		ctx := context.Background()
		s := open()
		a, b := AlertState(0), AlertState(1)
		require.NoError(t, s.PutAlertState(ctx, a))
		require.NoError(t, s.PutAlertState(ctx, b))
		require.NoError(t, s.DeleteAlertState(ctx, b.Key))
		require.NoError(t, s.Close())

		s = open()
		defer s.Close()
		list, err := s.ListAlertStates(ctx)
		require.NoError(t, err)
		require.Len(t, list, 1)
		RequireSameAlertState(t, a, list[0])
	})
}

// Serial is the suite's serial number i (i >= 0) in the store's form.
func Serial(i int) string { return fmt.Sprintf("7e%030x", i+1) }

// Issuance is issuance record i, issued to identity sa<i%3> by generation
// 1 + i%2.
func Issuance(i int, notAfter time.Time) store.Issuance {
	return store.Issuance{
		Serial:      Serial(i),
		Identity:    fmt.Sprintf("spiffe://cluster.local/ns/default/sa/sa%d", i%3),
		NotBefore:   notAfter.Add(-24 * time.Hour),
		NotAfter:    notAfter,
		Fingerprint: fmt.Sprintf("%064x", i),
		Profile:     "classical",
		Requester:   "grpc:test",
		Generation:  uint64(1 + i%2),
		IssuedAt:    notAfter.Add(-24 * time.Hour),
	}
}

// Revocation is a leaf revocation of serial i with every field set.
func Revocation(i int, notAfter time.Time) store.Revocation {
	return store.Revocation{
		Serial:         Serial(1000 + i),
		Kind:           store.KindLeaf,
		Generation:     2,
		Known:          true,
		Identity:       fmt.Sprintf("spiffe://cluster.local/ns/default/sa/sa%d", i),
		NotAfter:       notAfter,
		Reason:         store.ReasonKeyCompromise,
		RevokedAt:      T0.Add(time.Duration(i) * time.Second),
		InvalidityDate: T0.Add(-time.Hour),
		Requester:      "admin:test",
	}
}

// RequireSameIssuance compares two issuance records (times with Equal).
func RequireSameIssuance(t *testing.T, want, got store.Issuance) {
	t.Helper()
	require.Equal(t, want.Serial, got.Serial)
	require.Equal(t, want.Identity, got.Identity)
	require.True(t, want.NotBefore.Equal(got.NotBefore), "NotBefore %v != %v", want.NotBefore, got.NotBefore)
	require.True(t, want.NotAfter.Equal(got.NotAfter), "NotAfter %v != %v", want.NotAfter, got.NotAfter)
	require.True(t, want.IssuedAt.Equal(got.IssuedAt), "IssuedAt %v != %v", want.IssuedAt, got.IssuedAt)
	require.Equal(t, want.Fingerprint, got.Fingerprint)
	require.Equal(t, want.Profile, got.Profile)
	require.Equal(t, want.Requester, got.Requester)
	require.Equal(t, want.Generation, got.Generation)
}

// RequireSameRevocation compares two revocations, Seq included (times with Equal).
func RequireSameRevocation(t *testing.T, want, got store.Revocation) {
	t.Helper()
	require.Equal(t, want.Seq, got.Seq, "Seq of %s", want.Serial)
	require.Equal(t, want.Serial, got.Serial)
	require.Equal(t, want.Kind, got.Kind)
	require.Equal(t, want.Generation, got.Generation)
	require.Equal(t, want.Known, got.Known)
	require.Equal(t, want.Identity, got.Identity)
	require.True(t, want.NotAfter.Equal(got.NotAfter), "NotAfter %v != %v", want.NotAfter, got.NotAfter)
	require.Equal(t, want.Reason, got.Reason)
	require.True(t, want.RevokedAt.Equal(got.RevokedAt), "RevokedAt %v != %v", want.RevokedAt, got.RevokedAt)
	require.True(t, want.InvalidityDate.Equal(got.InvalidityDate), "InvalidityDate %v != %v", want.InvalidityDate, got.InvalidityDate)
	require.Equal(t, want.Requester, got.Requester)
}

func serials(recs []store.Issuance) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.Serial
	}
	return out
}

func listIssuances(t *testing.T, s store.Store) []store.Issuance {
	t.Helper()
	var out []store.Issuance
	require.NoError(t, s.ListIssuances(context.Background(), func(r store.Issuance) bool {
		out = append(out, r)
		return true
	}))
	return out
}

func byIdentity(t *testing.T, s store.Store, id string) []string {
	t.Helper()
	var out []store.Issuance
	require.NoError(t, s.ListIssuancesByIdentity(context.Background(), id, func(r store.Issuance) bool {
		out = append(out, r)
		return true
	}))
	for _, r := range out {
		require.Equal(t, id, r.Identity, "ListIssuancesByIdentity(%s) returned a record of another identity", id)
	}
	return slices.Sorted(slices.Values(serials(out)))
}

func byGeneration(t *testing.T, s store.Store, gen uint64) []string {
	t.Helper()
	var out []store.Issuance
	require.NoError(t, s.ListIssuancesByGeneration(context.Background(), gen, func(r store.Issuance) bool {
		out = append(out, r)
		return true
	}))
	for _, r := range out {
		require.Equal(t, gen, r.Generation, "ListIssuancesByGeneration(%d) returned a record of another generation", gen)
	}
	return slices.Sorted(slices.Values(serials(out)))
}

// listRevocations returns the revocations after since, checking Seq order.
func listRevocations(t *testing.T, s store.Store, since uint64) []store.Revocation {
	t.Helper()
	var out []store.Revocation
	require.NoError(t, s.ListRevocations(context.Background(), since, func(r store.Revocation) bool {
		out = append(out, r)
		return true
	}))
	for i, r := range out {
		require.Greater(t, r.Seq, since, "ListRevocations(%d) returned Seq %d", since, r.Seq)
		if i > 0 {
			require.Greater(t, r.Seq, out[i-1].Seq, "ListRevocations is not in strictly increasing Seq order")
		}
	}
	return out
}

func lastSeq(t *testing.T, s store.Store) uint64 {
	t.Helper()
	n, err := s.LastRevocationSeq(context.Background())
	require.NoError(t, err)
	return n
}

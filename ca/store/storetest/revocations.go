package storetest

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/store"
)

func testRevocationsRoundTrip(t *testing.T, s store.Store) {
	ctx := context.Background()
	require.Zero(t, lastSeq(t, s), "an empty store")
	_, err := s.GetRevocation(ctx, Serial(1))
	require.ErrorIs(t, err, store.ErrNotFound)

	leaf := Revocation(1, T0.Add(time.Hour))
	unknown := store.Revocation{Serial: "01", Kind: store.KindLeaf, Reason: store.ReasonUnspecified, RevokedAt: T0}
	inter := store.Revocation{
		Serial: Serial(2000), Kind: store.KindIntermediate, Generation: 3, Known: true,
		NotAfter: T0.Add(90 * 24 * time.Hour), Reason: store.ReasonCACompromise, RevokedAt: T0, Requester: "admin:x",
	}
	leaf.Seq = 999 // the store assigns Seq, whatever the caller says
	got, err := s.Revoke(ctx, []store.Revocation{leaf, unknown, inter})
	require.NoError(t, err)
	require.Len(t, got, 3)
	require.NotZero(t, got[0].Seq)
	require.Greater(t, got[1].Seq, got[0].Seq, "Seq follows the order of the batch")
	require.Greater(t, got[2].Seq, got[1].Seq)
	require.Equal(t, got[2].Seq, lastSeq(t, s))
	for i, want := range []store.Revocation{leaf, unknown, inter} {
		want.Seq = got[i].Seq
		RequireSameRevocation(t, want, got[i])
		stored, err := s.GetRevocation(ctx, want.Serial)
		require.NoError(t, err)
		RequireSameRevocation(t, want, stored)
	}
	list := listRevocations(t, s, 0)
	require.Len(t, list, 3)
	for i := range list {
		RequireSameRevocation(t, got[i], list[i])
	}
	got, err = s.Revoke(ctx, nil)
	require.NoError(t, err, "an empty batch")
	require.Empty(t, got)
}

func testRevocationsIdempotent(t *testing.T, s store.Store) {
	ctx := context.Background()
	orig, err := s.Revoke(ctx, []store.Revocation{Revocation(1, T0.Add(time.Hour))})
	require.NoError(t, err)
	require.False(t, orig[0].Existing, "stored by this call")
	seq := lastSeq(t, s)

	again := Revocation(1, T0.Add(time.Hour))
	again.Reason = store.ReasonSuperseded
	again.RevokedAt = T0.Add(time.Minute)
	again.Requester = "admin:other"
	fresh := Revocation(2, T0.Add(time.Hour))
	got, err := s.Revoke(ctx, []store.Revocation{again, fresh})
	require.NoError(t, err)
	require.Len(t, got, 2)
	RequireSameRevocation(t, orig[0], got[0])
	require.True(t, got[0].Existing, "revoked before: the original record, marked")
	require.False(t, got[1].Existing)
	require.Equal(t, seq+1, lastSeq(t, s), "only the new serial took a Seq")
	require.Equal(t, lastSeq(t, s), got[1].Seq)
	stored, err := s.GetRevocation(ctx, orig[0].Serial)
	require.NoError(t, err)
	RequireSameRevocation(t, orig[0], stored)
	require.False(t, stored.Existing, "reads never set it")
	list := listRevocations(t, s, 0)
	require.Len(t, list, 2)
	require.False(t, list[0].Existing || list[1].Existing, "reads never set it")
}

func testRevocationsBatchDuplicates(t *testing.T, s store.Store) {
	ctx := context.Background()
	a, b := Revocation(1, T0), Revocation(1, T0)
	b.Reason = store.ReasonAffiliationChanged
	got, err := s.Revoke(ctx, []store.Revocation{a, Revocation(2, T0), b})
	require.NoError(t, err)
	require.Len(t, got, 3)
	RequireSameRevocation(t, got[0], got[2])
	require.Equal(t, store.ReasonKeyCompromise, got[2].Reason, "the first of the batch is the record")
	require.Equal(t, []bool{false, false, true}, []bool{got[0].Existing, got[1].Existing, got[2].Existing}, "the repeat inside the batch is marked")
	require.Len(t, listRevocations(t, s, 0), 2)
	require.Equal(t, got[1].Seq, lastSeq(t, s))
}

func testRevocationsBadInput(t *testing.T, s store.Store) {
	ctx := context.Background()
	good := Revocation(1, T0)
	bad := map[string]func(*store.Revocation){
		"empty serial":          func(r *store.Revocation) { r.Serial = "" },
		"upper-case serial":     func(r *store.Revocation) { r.Serial = strings.ToUpper(r.Serial) },
		"colons":                func(r *store.Revocation) { r.Serial = "7e:01" },
		"not hex":               func(r *store.Revocation) { r.Serial = "7g" },
		"odd length":            func(r *store.Revocation) { r.Serial = "7e1" },
		"leading zero octet":    func(r *store.Revocation) { r.Serial = "007e" },
		"21 octets":             func(r *store.Revocation) { r.Serial = "7e" + strings.Repeat("00", 20) },
		"unknown kind":          func(r *store.Revocation) { r.Kind = "root" },
		"empty kind":            func(r *store.Revocation) { r.Kind = "" },
		"reason 7":              func(r *store.Revocation) { r.Reason = 7 },
		"reason 11":             func(r *store.Revocation) { r.Reason = 11 },
		"negative reason":       func(r *store.Revocation) { r.Reason = -1 },
		"no revocation time":    func(r *store.Revocation) { r.RevokedAt = time.Time{} },
		"serial with a newline": func(r *store.Revocation) { r.Serial = "7e\n" },
		"serial zero":           func(r *store.Revocation) { r.Serial = "00" },
		"revoked in year 0":     func(r *store.Revocation) { r.RevokedAt = time.Date(0, 6, 1, 0, 0, 0, 0, time.UTC) },
		"revoked in year 10000": func(r *store.Revocation) { r.RevokedAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) },
		"invalidity in year 0":  func(r *store.Revocation) { r.InvalidityDate = time.Date(0, 6, 1, 0, 0, 0, 0, time.UTC) },
	}
	for name, mutate := range bad {
		r := Revocation(2, T0)
		mutate(&r)
		got, err := s.Revoke(ctx, []store.Revocation{good, r})
		require.ErrorIs(t, err, store.ErrInvalid, name)
		require.Nil(t, got, name)
	}
	require.Zero(t, lastSeq(t, s), "nothing was stored")
	require.Empty(t, listRevocations(t, s, 0))
	_, err := s.GetRevocation(ctx, good.Serial)
	require.ErrorIs(t, err, store.ErrNotFound, "the good record of a refused batch is not stored")

	// The limits themselves are accepted.
	edge := []store.Revocation{good, Revocation(3, T0), Revocation(4, T0)}
	edge[1].Serial = "7f" + strings.Repeat("ff", 19) // 20 octets
	edge[1].Reason = store.ReasonAACompromise
	edge[2].Serial = "80"
	edge[2].Reason = store.ReasonRemoveFromCRL // valid for RFC 5280; ParseReason refuses it for callers
	got, err := s.Revoke(ctx, edge)
	require.NoError(t, err)
	require.Len(t, got, 3)
}

func testRevocationsListSince(t *testing.T, s store.Store) {
	ctx := context.Background()
	var all []store.Revocation
	for i := range 5 {
		batch := []store.Revocation{Revocation(2*i, T0), Revocation(2*i+1, T0)}
		got, err := s.Revoke(ctx, batch)
		require.NoError(t, err)
		all = append(all, got...)
	}
	list := listRevocations(t, s, 0)
	require.Len(t, list, 10)
	for i := range list {
		RequireSameRevocation(t, all[i], list[i])
	}
	for i, r := range all {
		after := listRevocations(t, s, r.Seq)
		require.Len(t, after, len(all)-i-1, "since %d", r.Seq)
		if len(after) > 0 {
			require.Equal(t, all[i+1].Serial, after[0].Serial)
		}
	}
	require.Empty(t, listRevocations(t, s, lastSeq(t, s)))
	require.Empty(t, listRevocations(t, s, ^uint64(0)), "since the largest Seq")

	n := 0
	require.NoError(t, s.ListRevocations(ctx, 0, func(store.Revocation) bool { n++; return n < 3 }))
	require.Equal(t, 3, n, "returning false stops the walk")
}

func testRevocationsPrune(t *testing.T, s store.Store) {
	ctx := context.Background()
	cutoff := T0.Add(10 * time.Hour)
	expired := Revocation(1, cutoff.Add(-time.Second))
	atCutoff := Revocation(2, cutoff)
	unexpired := Revocation(3, cutoff.Add(time.Hour))
	unknown := Revocation(4, time.Time{}) // expiry unknown: never pruned
	unknown.Known = false
	veryOld := Revocation(5, T0.Add(-365*24*time.Hour))
	got, err := s.Revoke(ctx, []store.Revocation{expired, atCutoff, unexpired, unknown, veryOld})
	require.NoError(t, err)
	seq := lastSeq(t, s)

	n, err := s.PruneRevocations(ctx, cutoff)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	for _, r := range []store.Revocation{expired, veryOld} {
		_, err := s.GetRevocation(ctx, r.Serial)
		require.ErrorIs(t, err, store.ErrNotFound, r.Serial)
	}
	list := listRevocations(t, s, 0)
	require.Len(t, list, 3)
	for i, want := range []store.Revocation{got[1], got[2], got[3]} {
		RequireSameRevocation(t, want, list[i])
	}
	require.Equal(t, seq, lastSeq(t, s), "pruning never lowers the last Seq")
	require.Len(t, listRevocations(t, s, got[0].Seq), 3)

	// Far in the future only the unknown expiry stays.
	n, err = s.PruneRevocations(ctx, T0.Add(100*365*24*time.Hour))
	require.NoError(t, err)
	require.Equal(t, 2, n)
	list = listRevocations(t, s, 0)
	require.Len(t, list, 1)
	RequireSameRevocation(t, got[3], list[0])

	// A new revocation after a prune gets a Seq above every earlier one.
	next, err := s.Revoke(ctx, []store.Revocation{Revocation(6, time.Time{})})
	require.NoError(t, err)
	require.Greater(t, next[0].Seq, seq)
	// A pruned serial revoked again is a new record.
	re, err := s.Revoke(ctx, []store.Revocation{expired})
	require.NoError(t, err)
	require.Greater(t, re[0].Seq, next[0].Seq)
}

func testRevocationsConcurrent(t *testing.T, s store.Store) {
	ctx := context.Background()
	const n = 40
	var wg sync.WaitGroup
	seqs := make([]uint64, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			got, err := s.Revoke(ctx, []store.Revocation{Revocation(i%20, T0)})
			errs[i] = err
			if err == nil {
				seqs[i] = got[0].Seq
			}
		})
	}
	wg.Wait()
	bySerial := map[string]uint64{}
	distinct := map[uint64]bool{}
	for i := range n {
		require.NoError(t, errs[i])
		serial := Revocation(i%20, T0).Serial
		if s, ok := bySerial[serial]; ok {
			require.Equal(t, s, seqs[i], "both revocations of %s return the one record", serial)
		}
		bySerial[serial] = seqs[i]
		distinct[seqs[i]] = true
	}
	require.Len(t, distinct, 20)
	require.Len(t, listRevocations(t, s, 0), 20)
}

func testCRLNumbers(t *testing.T, s store.Store) {
	ctx := context.Background()
	next := func(scope string) uint64 {
		t.Helper()
		cut, err := s.NextCRLNumber(ctx, scope)
		require.NoError(t, err)
		return cut.Number
	}
	require.Equal(t, uint64(1), next("gen-1"), "a scope starts at 1")
	require.Equal(t, uint64(2), next("gen-1"))
	require.Equal(t, uint64(1), next("root"), "scopes are independent")
	require.Equal(t, uint64(3), next("gen-1"))
	require.Equal(t, uint64(1), next("gen-10"), "a scope that extends another is another scope")
	require.Equal(t, uint64(2), next("root"))
	require.Equal(t, uint64(1), next("root-external"))
	require.Equal(t, uint64(4), next("gen-1"))
}

// testCRLCut: a CRL number comes with the last revocation Seq committed
// when it was allocated; a repeated revocation, which stores nothing,
// leaves it.
func testCRLCut(t *testing.T, s store.Store) {
	ctx := context.Background()
	next := func() store.CRLCut {
		t.Helper()
		cut, err := s.NextCRLNumber(ctx, "gen-1")
		require.NoError(t, err)
		return cut
	}
	require.Equal(t, store.CRLCut{Number: 1, Seq: 0}, next(), "no revocation yet")
	_, err := s.Revoke(ctx, []store.Revocation{Revocation(1, T0), Revocation(2, T0), Revocation(3, T0)})
	require.NoError(t, err)
	require.Equal(t, store.CRLCut{Number: 2, Seq: 3}, next())
	_, err = s.Revoke(ctx, []store.Revocation{Revocation(2, T0)})
	require.NoError(t, err)
	require.Equal(t, store.CRLCut{Number: 3, Seq: 3}, next(), "revoked again: no new record")
	_, err = s.Revoke(ctx, []store.Revocation{Revocation(4, T0)})
	require.NoError(t, err)
	cut, err := s.NextCRLNumber(ctx, "root")
	require.NoError(t, err)
	require.Equal(t, store.CRLCut{Number: 1, Seq: 4}, cut, "one revocation sequence for every scope")
}

func testCRLNumbersBadScope(t *testing.T, s store.Store) {
	ctx := context.Background()
	for _, scope := range []string{"", "gen 1", "gen-1\n", "gén", "\x00", strings.Repeat("g", store.MaxCRLScopeLen+1)} {
		cut, err := s.NextCRLNumber(ctx, scope)
		require.ErrorIs(t, err, store.ErrInvalid, "%q", scope)
		require.Zero(t, cut)
	}
	cut, err := s.NextCRLNumber(ctx, strings.Repeat("g", store.MaxCRLScopeLen))
	require.NoError(t, err)
	require.Equal(t, uint64(1), cut.Number)
}

func testCRLNumbersConcurrent(t *testing.T, s store.Store) {
	ctx := context.Background()
	const workers, each = 16, 25
	seen := drawCRLNumbers(t, workers, each, func(int) store.Store { return s })
	cut, err := s.NextCRLNumber(ctx, "gen-1")
	require.NoError(t, err)
	n := cut.Number
	require.Greater(t, n, uint64(workers*each)-1)
	for m := range seen {
		require.Less(t, m, n)
	}
}

// drawCRLNumbers has workers callers draw each CRL numbers of scope gen-1
// at once, caller w from pick(w), and checks them
// (requireDistinctIncreasing); it returns the set.
func drawCRLNumbers(t *testing.T, workers, each int, pick func(w int) store.Store) map[uint64]bool {
	t.Helper()
	ctx := context.Background()
	got := make([][]uint64, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		s := pick(w)
		wg.Go(func() {
			for range each {
				cut, err := s.NextCRLNumber(ctx, "gen-1")
				if err != nil {
					errs[w] = err
					return
				}
				got[w] = append(got[w], cut.Number)
			}
		})
	}
	wg.Wait()
	return requireDistinctIncreasing(t, got, errs, workers*each)
}

// requireDistinctIncreasing checks the CRL numbers concurrent callers got
// (got[w], in the order caller w got them): no error, none handed out
// twice, each caller's increasing, total in all. It returns the set.
func requireDistinctIncreasing(t *testing.T, got [][]uint64, errs []error, total int) map[uint64]bool {
	t.Helper()
	seen := map[uint64]bool{}
	for w := range got {
		require.NoError(t, errs[w])
		for i, n := range got[w] {
			require.False(t, seen[n], "CRL number %d handed out twice", n)
			seen[n] = true
			if i > 0 {
				require.Greater(t, n, got[w][i-1], "one caller's numbers increase")
			}
		}
	}
	require.Len(t, seen, total)
	return seen
}

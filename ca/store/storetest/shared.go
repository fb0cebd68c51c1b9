package storetest

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/store"
)

// RunShared runs the cases of several meshca replicas on one store. open
// returns two handles on one new, empty store: two connection pools of one
// database for a shared backend, or the same handle twice for an embedded
// one (which one process holds). The suite closes them.
func RunShared(t *testing.T, open func(t *testing.T) (a, b store.Store)) {
	run := func(name string, f func(t *testing.T, a, b store.Store)) {
		t.Run(name, func(t *testing.T) {
			a, b := open(t)
			t.Cleanup(func() {
				_ = a.Close()
				if b != a {
					_ = b.Close()
				}
			})
			f(t, a, b)
		})
	}
	run("Generations/ConcurrentActivationsLeaveExactlyOneActive", testSharedConcurrentActivations)
	run("Generations/ConcurrentSwitchesOfOneGenerationDecideOne", testSharedSwitchesOfTheSameGenerationDecideOne)
	run("CRLNumbers/TwoHandlesNeverHandOutANumberTwice", testSharedCRLNumbers)
	run("CRLNumbers/AGreaterNumberNeverCutsFewerRevocations", testSharedCRLCuts)
	run("Revocations/TwoHandlesGetDistinctSeqs", testSharedRevocations)
}

// testSharedConcurrentActivations has two replicas activate two different
// prepared generations of one lineage at the same moment, round after
// round: both activations succeed (the later one retires the earlier), and
// exactly one generation of the lineage is active after each round.
func testSharedConcurrentActivations(t *testing.T, a, b store.Store) {
	ctx := context.Background()
	for _, signer := range []string{store.DefaultSigner, "alpha"} {
		first := add(t, a, signerGen(0, signer))
		require.NoError(t, a.ActivateGeneration(ctx, first.ID, T0))
		for round := range 15 {
			ga := add(t, a, signerGen(2*round+1, signer))
			gb := add(t, b, signerGen(2*round+2, signer))
			at := T0.Add(time.Duration(round+1) * time.Hour)
			start := make(chan struct{})
			var wg sync.WaitGroup
			var errA, errB error
			wg.Go(func() { <-start; errA = a.ActivateGeneration(ctx, ga.ID, at) })
			wg.Go(func() { <-start; errB = b.ActivateGeneration(ctx, gb.ID, at.Add(time.Second)) })
			close(start)
			wg.Wait()
			require.NoError(t, errA, "round %d, lineage %q: replica A's activation", round, signer)
			require.NoError(t, errB, "round %d, lineage %q: replica B's activation", round, signer)

			for _, s := range []store.Store{a, b} {
				gens, err := s.ListGenerations(ctx)
				require.NoError(t, err)
				var active []uint64
				for _, g := range gens {
					if g.Signer == signer && g.Active() {
						active = append(active, g.ID)
					}
				}
				require.Len(t, active, 1, "round %d, lineage %q: active generations %v", round, signer, active)
				require.Contains(t, []uint64{ga.ID, gb.ID}, active[0], "round %d: one of the two activated ones is active", round)
				for _, g := range gens {
					if g.Signer == signer && g.ID != active[0] {
						require.Equal(t, store.StateRetired, g.State(), "round %d: generation %d", round, g.ID)
					}
				}
			}
		}
	}
}

// testSharedCRLNumbers allocates CRL numbers of one scope from both handles
// at once: no number is handed out twice, and each caller's numbers
// increase.
func testSharedCRLNumbers(t *testing.T, a, b store.Store) {
	const workers, each = 8, 25
	seen := drawCRLNumbers(t, workers, each, func(w int) store.Store {
		if w%2 == 1 {
			return b
		}
		return a
	})
	for n := uint64(1); n <= workers*each; n++ {
		require.True(t, seen[n], "CRL number %d skipped: numbers are handed out in order", n)
	}
}

// testSharedCRLCuts allocates CRL numbers of one scope from both handles
// while both revoke: ordered by number, the cuts' Seqs never go back, each
// cut covers every revocation acknowledged before its allocation began
// and none assigned after it returned, and every Seq up to a cut is
// committed and listed as soon as the cut is handed out (what a CRL built
// from it lists).
func testSharedCRLCuts(t *testing.T, a, b store.Store) {
	ctx := context.Background()
	const allocators, each, revokers, revocations = 6, 30, 4, 40
	type drawn struct {
		cut         store.CRLCut
		before, end uint64 // the last Seq acknowledged before the call, and read after it
	}
	handle := func(w int) store.Store {
		if w%2 == 1 {
			return b
		}
		return a
	}
	var mu sync.Mutex
	var acked uint64 // the highest Seq whose Revoke has returned
	var cuts []drawn
	errs := make(chan error, allocators+revokers)
	var wg sync.WaitGroup
	for w := range revokers {
		s := handle(w)
		wg.Go(func() {
			for i := range revocations {
				got, err := s.Revoke(ctx, []store.Revocation{Revocation(w*revocations+i, T0)})
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				acked = max(acked, got[0].Seq)
				mu.Unlock()
			}
		})
	}
	for w := range allocators {
		s := handle(w)
		wg.Go(func() {
			for range each {
				mu.Lock()
				before := acked
				mu.Unlock()
				cut, err := s.NextCRLNumber(ctx, "gen-1")
				if err != nil {
					errs <- err
					return
				}
				end, err := s.LastRevocationSeq(ctx)
				if err != nil {
					errs <- err
					return
				}
				var listed uint64 // nothing is pruned here: Seqs 1..cut.Seq are all there
				if err := s.ListRevocations(ctx, 0, func(r store.Revocation) bool {
					if r.Seq > cut.Seq {
						return false
					}
					listed++
					return true
				}); err != nil {
					errs <- err
					return
				}
				if listed != cut.Seq {
					errs <- fmt.Errorf("CRL %d: %d revocations listed up to its cut, Seq %d: a Seq up to the cut is not committed yet", cut.Number, listed, cut.Seq)
					return
				}
				mu.Lock()
				cuts = append(cuts, drawn{cut, before, end})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Len(t, cuts, allocators*each)
	slices.SortFunc(cuts, func(x, y drawn) int { return cmp.Compare(x.cut.Number, y.cut.Number) })
	for i, d := range cuts {
		require.GreaterOrEqual(t, d.cut.Seq, d.before, "CRL %d: its cut misses a revocation acknowledged before it was allocated", d.cut.Number)
		require.LessOrEqual(t, d.cut.Seq, d.end, "CRL %d: its cut is past the last revocation", d.cut.Number)
		if i > 0 {
			require.GreaterOrEqual(t, d.cut.Seq, cuts[i-1].cut.Seq, "CRL %d cuts fewer revocations than CRL %d", d.cut.Number, cuts[i-1].cut.Number)
		}
	}
	require.Equal(t, uint64(revokers*revocations), lastSeq(t, a))
}

// testSharedRevocations revokes from both handles at once: every new
// serial gets its own Seq, and a serial revoked through both handles is
// one record.
func testSharedRevocations(t *testing.T, a, b store.Store) {
	ctx := context.Background()
	const n = 40
	seqs := make([]uint64, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() {
			got, err := s.Revoke(ctx, []store.Revocation{Revocation(i%25, T0)})
			errs[i] = err
			if err == nil {
				seqs[i] = got[0].Seq
			}
		})
	}
	wg.Wait()
	bySerial := map[string]uint64{}
	for i := range n {
		require.NoError(t, errs[i], "revocation %d", i)
		serial := Revocation(i%25, T0).Serial
		if s, ok := bySerial[serial]; ok {
			require.Equal(t, s, seqs[i], "both revocations of %s return the one record", serial)
		}
		bySerial[serial] = seqs[i]
	}
	distinct := map[uint64]bool{}
	for _, s := range bySerial {
		distinct[s] = true
	}
	require.Len(t, distinct, 25, fmt.Sprint(bySerial))
	require.Len(t, listRevocations(t, b, 0), 25)
	require.Equal(t, uint64(25), lastSeq(t, a))
}

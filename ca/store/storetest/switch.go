package storetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/store"
)

func switcher(t *testing.T, s store.Store) store.GenerationSwitcher {
	t.Helper()
	sw, ok := s.(store.GenerationSwitcher)
	require.True(t, ok, "%T does not implement store.GenerationSwitcher", s)
	return sw
}

func testSwitchNamesTheGenerationItReplaces(t *testing.T, s store.Store) {
	ctx := context.Background()
	sw := switcher(t, s)
	g1, g2, g3 := add(t, s, gen(1)), add(t, s, gen(2)), add(t, s, gen(3))
	other := add(t, s, signerGen(4, "alpha"))

	require.ErrorIs(t, sw.SwitchGeneration(ctx, g1.ID, g3.ID, store.Fence{}, T0), store.ErrConflict, "none is active, not g3")
	require.Equal(t, map[uint64]store.GenerationState{g1.ID: store.StatePrepared, g2.ID: store.StatePrepared, g3.ID: store.StatePrepared, other.ID: store.StatePrepared}, lineageStates(t, s))
	require.NoError(t, sw.SwitchGeneration(ctx, g1.ID, 0, store.Fence{}, T0), "the first activation replaces none")
	require.NoError(t, sw.SwitchGeneration(ctx, other.ID, 0, store.Fence{}, T0), "lineages are independent")

	before, err := s.ListGenerations(ctx)
	require.NoError(t, err)
	for name, c := range map[string]struct {
		id, replaces uint64
		want         error
	}{
		"replaces none while g1 is active": {g2.ID, 0, store.ErrConflict},
		"replaces a prepared one":          {g2.ID, g3.ID, store.ErrConflict},
		"replaces another lineage's":       {g2.ID, other.ID, store.ErrConflict},
		"unknown generation":               {999, g1.ID, store.ErrNotFound},
	} {
		require.ErrorIs(t, sw.SwitchGeneration(ctx, c.id, c.replaces, store.Fence{}, T0.Add(time.Hour)), c.want, name)
	}
	after, err := s.ListGenerations(ctx)
	require.NoError(t, err)
	require.Equal(t, before, after, "a refused switch changes nothing")

	at := T0.Add(2 * time.Hour)
	require.NoError(t, sw.SwitchGeneration(ctx, g2.ID, g1.ID, store.Fence{}, at))
	require.Equal(t, map[uint64]store.GenerationState{
		g1.ID: store.StateRetired, g2.ID: store.StateActive, g3.ID: store.StatePrepared, other.ID: store.StateActive,
	}, lineageStates(t, s))
	again, err := s.ListGenerations(ctx)
	require.NoError(t, err)
	require.NoError(t, sw.SwitchGeneration(ctx, g2.ID, g1.ID, store.Fence{}, at.Add(time.Hour)), "a retry of a switch that happened")
	retried, err := s.ListGenerations(ctx)
	require.NoError(t, err)
	require.Equal(t, again, retried, "and changes nothing")
	require.ErrorIs(t, sw.SwitchGeneration(ctx, g3.ID, g1.ID, store.Fence{}, at), store.ErrConflict, "g1 is no longer active")
	require.ErrorIs(t, sw.SwitchGeneration(ctx, g1.ID, g2.ID, store.Fence{}, at), store.ErrRetired)
}

func testSwitchRefusesAnOlderFence(t *testing.T, s store.Store) {
	ctx := context.Background()
	sw := switcher(t, s)
	var ids []uint64
	for i := range 6 {
		ids = append(ids, add(t, s, gen(i)).ID)
	}
	at := T0
	next := func() time.Time { at = at.Add(time.Minute); return at }
	require.NoError(t, sw.SwitchGeneration(ctx, ids[0], 0, store.Fence{Holder: "meshca-a", Token: 2}, next()))
	require.ErrorIs(t, sw.SwitchGeneration(ctx, ids[1], ids[0], store.Fence{Holder: "meshca-b", Token: 1}, next()), store.ErrFenced, "an older token")
	require.ErrorIs(t, sw.SwitchGeneration(ctx, ids[1], ids[0], store.Fence{Holder: "meshca-b", Token: 2}, next()), store.ErrFenced, "the same token, another holder")
	require.NoError(t, sw.SwitchGeneration(ctx, ids[1], ids[0], store.Fence{Holder: "meshca-a", Token: 2}, next()), "the holder again")
	require.NoError(t, sw.SwitchGeneration(ctx, ids[2], ids[1], store.Fence{Holder: "meshca-b", Token: 3}, next()), "the next holder")
	require.ErrorIs(t, sw.SwitchGeneration(ctx, ids[3], ids[2], store.Fence{Holder: "meshca-a", Token: 2}, next()), store.ErrFenced, "the old holder, after the new one wrote")
	require.NoError(t, sw.SwitchGeneration(ctx, ids[3], ids[2], store.Fence{}, next()), "no fence (one replica) is not checked")
	require.ErrorIs(t, sw.SwitchGeneration(ctx, ids[4], ids[3], store.Fence{Holder: "meshca-a", Token: 2}, next()), store.ErrFenced, "and does not reset the fence")
	require.Equal(t, map[uint64]store.GenerationState{
		ids[0]: store.StateRetired, ids[1]: store.StateRetired, ids[2]: store.StateRetired,
		ids[3]: store.StateActive, ids[4]: store.StatePrepared, ids[5]: store.StatePrepared,
	}, states(t, s))
}

// testSharedSwitchesOfTheSameGenerationDecideOne: two replicas both try
// to replace the active generation, each with its own new one: exactly
// one switch succeeds, the other fails with ErrConflict, and exactly one
// generation is active.
func testSharedSwitchesOfTheSameGenerationDecideOne(t *testing.T, a, b store.Store) {
	ctx := context.Background()
	swA, swB := switcher(t, a), switcher(t, b)
	cur := add(t, a, gen(0))
	require.NoError(t, swA.SwitchGeneration(ctx, cur.ID, 0, store.Fence{}, T0))
	for round := range 15 {
		ga, gb := add(t, a, gen(2*round+1)), add(t, b, gen(2*round+2))
		at := T0.Add(time.Duration(round+1) * time.Hour)
		start := make(chan struct{})
		var wg sync.WaitGroup
		var errA, errB error
		wg.Go(func() { <-start; errA = swA.SwitchGeneration(ctx, ga.ID, cur.ID, store.Fence{}, at) })
		wg.Go(func() { <-start; errB = swB.SwitchGeneration(ctx, gb.ID, cur.ID, store.Fence{}, at) })
		close(start)
		wg.Wait()
		var winner store.Generation
		switch {
		case errA == nil && errB != nil:
			require.ErrorIs(t, errB, store.ErrConflict, "round %d", round)
			winner = ga
		case errB == nil && errA != nil:
			require.ErrorIs(t, errA, store.ErrConflict, "round %d", round)
			winner = gb
		default:
			t.Fatalf("round %d: exactly one switch must succeed: A %v, B %v", round, errA, errB)
		}
		st := states(t, b)
		require.Equal(t, store.StateActive, st[winner.ID], "round %d", round)
		require.Equal(t, store.StateRetired, st[cur.ID], "round %d", round)
		loser := ga.ID + gb.ID - winner.ID
		require.Equal(t, store.StatePrepared, st[loser], "round %d: the loser's generation stays prepared", round)
		cur = winner
	}
}

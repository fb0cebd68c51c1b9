package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/store"
)

// gen is a generation record as the rotation journal adds it.
func gen(i int) store.Generation {
	return store.Generation{
		CertDER: []byte(fmt.Sprintf("cert-%d", i)), ChainDER: [][]byte{[]byte("root")},
		KeyRef: fmt.Sprintf("key-%d", i), Profile: "classical", Source: "file-minted",
		Fingerprint: fmt.Sprintf("fp-%d", i), CreatedAt: T0.Add(time.Duration(i) * time.Hour),
	}
}

// states returns each generation's state by ID, and checks the invariant
// that at most one is active.
func states(t *testing.T, s store.Store) map[uint64]store.GenerationState {
	t.Helper()
	gens, err := s.ListGenerations(context.Background())
	require.NoError(t, err)
	out := map[uint64]store.GenerationState{}
	active := 0
	var last uint64
	for _, g := range gens {
		require.Greater(t, g.ID, last, "ListGenerations must return ID order")
		last = g.ID
		out[g.ID] = g.State()
		if g.Active() {
			active++
		}
	}
	require.LessOrEqual(t, active, 1, "two active generations: %v", out)
	return out
}

func add(t *testing.T, s store.Store, g store.Generation) store.Generation {
	t.Helper()
	got, err := s.AddGeneration(context.Background(), g)
	require.NoError(t, err)
	require.NotZero(t, got.ID)
	return got
}

func testGenerationsAddIsPrepared(t *testing.T, s store.Store) {
	g := gen(1)
	g.ActivatedAt = T0 // ignored: a new generation is prepared
	g1 := add(t, s, g)
	require.Equal(t, map[uint64]store.GenerationState{g1.ID: store.StatePrepared}, states(t, s))
	gens, err := s.ListGenerations(context.Background())
	require.NoError(t, err)
	require.Len(t, gens, 1)
	require.Equal(t, gen(1).CertDER, gens[0].CertDER)
	require.Equal(t, gen(1).ChainDER, gens[0].ChainDER)
	require.Equal(t, "key-1", gens[0].KeyRef)
	require.True(t, gens[0].CreatedAt.Equal(gen(1).CreatedAt))
	require.True(t, gens[0].ActivatedAt.IsZero())
	require.True(t, gens[0].VerifiedAt.IsZero())
}

func testGenerationsActivateRetiresThePrevious(t *testing.T, s store.Store) {
	ctx := context.Background()
	g1 := add(t, s, gen(1))
	require.NoError(t, s.ActivateGeneration(ctx, g1.ID, T0))
	require.Equal(t, map[uint64]store.GenerationState{g1.ID: store.StateActive}, states(t, s))

	g2 := add(t, s, gen(2))
	require.Equal(t, map[uint64]store.GenerationState{g1.ID: store.StateActive, g2.ID: store.StatePrepared}, states(t, s))
	require.NoError(t, s.MarkGenerationVerified(ctx, g2.ID, T0.Add(time.Minute)))
	require.Equal(t, map[uint64]store.GenerationState{g1.ID: store.StateActive, g2.ID: store.StatePrepared}, states(t, s),
		"verifying a prepared generation does not activate it")

	at := T0.Add(2 * time.Hour)
	require.NoError(t, s.ActivateGeneration(ctx, g2.ID, at))
	require.Equal(t, map[uint64]store.GenerationState{g1.ID: store.StateRetired, g2.ID: store.StateActive}, states(t, s))
	gens, err := s.ListGenerations(ctx)
	require.NoError(t, err)
	require.True(t, gens[0].RetiredAt.Equal(at), "the old one is retired at the activation time")
	require.True(t, gens[1].ActivatedAt.Equal(at))
	require.True(t, gens[1].VerifiedAt.Equal(T0.Add(time.Minute)))

	// Activating the active one again changes nothing.
	require.NoError(t, s.ActivateGeneration(ctx, g2.ID, at.Add(time.Hour)))
	again, err := s.ListGenerations(ctx)
	require.NoError(t, err)
	require.Equal(t, gens, again)
}

func testGenerationsSecondPreparedStaysPrepared(t *testing.T, s store.Store) {
	ctx := context.Background()
	g1 := add(t, s, gen(1))
	require.NoError(t, s.ActivateGeneration(ctx, g1.ID, T0))
	g2 := add(t, s, gen(2))
	g3 := add(t, s, gen(3))
	require.NoError(t, s.ActivateGeneration(ctx, g3.ID, T0.Add(time.Hour)))
	require.Equal(t, map[uint64]store.GenerationState{
		g1.ID: store.StateRetired, g2.ID: store.StatePrepared, g3.ID: store.StateActive,
	}, states(t, s), "activating one prepared generation leaves the other prepared one untouched")
	// The older prepared one can still be activated later (never none active in between).
	require.NoError(t, s.ActivateGeneration(ctx, g2.ID, T0.Add(2*time.Hour)))
	require.Equal(t, map[uint64]store.GenerationState{
		g1.ID: store.StateRetired, g2.ID: store.StateActive, g3.ID: store.StateRetired,
	}, states(t, s))
}

func testGenerationsBadActivationChangesNothing(t *testing.T, s store.Store) {
	ctx := context.Background()
	g1 := add(t, s, gen(1))
	require.NoError(t, s.ActivateGeneration(ctx, g1.ID, T0))
	g2 := add(t, s, gen(2))
	require.NoError(t, s.ActivateGeneration(ctx, g2.ID, T0.Add(time.Hour)))
	before, err := s.ListGenerations(ctx)
	require.NoError(t, err)

	err = s.ActivateGeneration(ctx, 999, T0.Add(2*time.Hour))
	require.True(t, errors.Is(err, store.ErrNotFound), "unknown id: %v", err)
	err = s.ActivateGeneration(ctx, g1.ID, T0.Add(2*time.Hour))
	require.True(t, errors.Is(err, store.ErrRetired), "retired id: %v", err)
	err = s.MarkGenerationVerified(ctx, 999, T0)
	require.True(t, errors.Is(err, store.ErrNotFound), "unknown id: %v", err)

	after, err := s.ListGenerations(ctx)
	require.NoError(t, err)
	require.Equal(t, before, after)
}

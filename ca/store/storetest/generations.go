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

// lineageStates is states for stores holding several signer lineages: it
// checks that each lineage has at most one active generation.
func lineageStates(t *testing.T, s store.Store) map[uint64]store.GenerationState {
	t.Helper()
	gens, err := s.ListGenerations(context.Background())
	require.NoError(t, err)
	out := map[uint64]store.GenerationState{}
	active := map[string]int{}
	for _, g := range gens {
		out[g.ID] = g.State()
		if g.Active() {
			active[g.Signer]++
		}
	}
	for signer, n := range active {
		require.LessOrEqual(t, n, 1, "lineage %q has %d active generations: %v", signer, n, out)
	}
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

// signerGen is gen(i) in the lineage of the named signer.
func signerGen(i int, signer string) store.Generation {
	g := gen(i)
	g.Signer = signer
	return g
}

func testGenerationsOneActivePerLineage(t *testing.T, s store.Store) {
	ctx := context.Background()
	d1 := add(t, s, gen(1))
	a1 := add(t, s, signerGen(2, "alpha"))
	require.NoError(t, s.ActivateGeneration(ctx, d1.ID, T0))
	require.NoError(t, s.ActivateGeneration(ctx, a1.ID, T0.Add(time.Minute)))
	require.Equal(t, map[uint64]store.GenerationState{d1.ID: store.StateActive, a1.ID: store.StateActive},
		lineageStates(t, s), "each lineage has its own active generation")

	a2 := add(t, s, signerGen(3, "alpha"))
	require.NoError(t, s.ActivateGeneration(ctx, a2.ID, T0.Add(time.Hour)))
	require.Equal(t, map[uint64]store.GenerationState{
		d1.ID: store.StateActive, a1.ID: store.StateRetired, a2.ID: store.StateActive,
	}, lineageStates(t, s), "activating in a lineage retires that lineage's previous active one")
	gens, err := s.ListGenerations(ctx)
	require.NoError(t, err)
	require.Equal(t, "alpha", gens[2].Signer, "the signer survives the round trip")
	require.True(t, gens[1].RetiredAt.Equal(T0.Add(time.Hour)))
}

func testGenerationsActivationKeepsOtherLineages(t *testing.T, s store.Store) {
	ctx := context.Background()
	d1 := add(t, s, gen(1))
	a1 := add(t, s, signerGen(2, "alpha"))
	b1 := add(t, s, signerGen(3, "beta"))
	for _, id := range []uint64{d1.ID, a1.ID, b1.ID} {
		require.NoError(t, s.ActivateGeneration(ctx, id, T0))
	}
	before, err := s.ListGenerations(ctx)
	require.NoError(t, err)

	d2 := add(t, s, gen(4))
	require.NoError(t, s.ActivateGeneration(ctx, d2.ID, T0.Add(time.Hour)))
	require.Equal(t, map[uint64]store.GenerationState{
		d1.ID: store.StateRetired, a1.ID: store.StateActive, b1.ID: store.StateActive, d2.ID: store.StateActive,
	}, lineageStates(t, s), "a default activation leaves the named lineages alone")
	after, err := s.ListGenerations(ctx)
	require.NoError(t, err)
	require.Equal(t, before[1], after[1], "alpha's record is untouched")
	require.Equal(t, before[2], after[2], "beta's record is untouched")

	b2 := add(t, s, signerGen(5, "beta"))
	require.NoError(t, s.ActivateGeneration(ctx, b2.ID, T0.Add(2*time.Hour)))
	require.Equal(t, map[uint64]store.GenerationState{
		d1.ID: store.StateRetired, a1.ID: store.StateActive, b1.ID: store.StateRetired,
		d2.ID: store.StateActive, b2.ID: store.StateActive,
	}, lineageStates(t, s), "a named activation leaves the default and other named lineages alone")
}

func testGenerationsDefaultLineage(t *testing.T, s store.Store) {
	ctx := context.Background()
	// A record written before lineages existed has no signer: it is the
	// default lineage, and a default activation retires it.
	old := add(t, s, gen(1))
	require.NoError(t, s.ActivateGeneration(ctx, old.ID, T0))
	gens, err := s.ListGenerations(ctx)
	require.NoError(t, err)
	require.Empty(t, gens[0].Signer)
	require.Equal(t, store.DefaultSigner, gens[0].Lineage())

	named := add(t, s, signerGen(2, "alpha"))
	require.NoError(t, s.ActivateGeneration(ctx, named.ID, T0.Add(time.Minute)))
	next := add(t, s, gen(3))
	require.NoError(t, s.ActivateGeneration(ctx, next.ID, T0.Add(time.Hour)))
	require.Equal(t, map[uint64]store.GenerationState{
		old.ID: store.StateRetired, named.ID: store.StateActive, next.ID: store.StateActive,
	}, lineageStates(t, s))
}

package intermediate

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/store"
)

// A signer with its own intermediate has its own Manager on the shared
// store, key store and root: the two lineages mint, activate and retire
// independently, each under its own subject, and each keeps exactly one
// active generation.
func TestManager_SignerLineagesRotateIndependently(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	first, err := f.m.Start(ctx)
	require.NoError(t, err)

	scfg := *f.cfg
	scfg.Intermediate.CommonName = f.cfg.Intermediate.CommonName + " signer alpha"
	scfg.Intermediate.Lifetime.Duration = lifetime / 3
	sm := New(Options{Config: &scfg, Keys: f.km, Store: f.st, Root: f.src, Clock: f.clk, Signer: "alpha",
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	alpha, err := sm.Start(ctx)
	require.NoError(t, err)
	require.NotEqual(t, first.Generation, alpha.Generation)
	require.Equal(t, scfg.Intermediate.CommonName, alpha.Bundle.Cert.Subject.CommonName)
	require.Equal(t, first.Bundle.Roots[0].Raw, alpha.Bundle.Roots[0].Raw, "the same root")
	require.Equal(t, "alpha", generation(t, f.st, alpha.Generation).Signer)
	require.Contains(t, generation(t, f.st, alpha.Generation).KeyRef, "intermediate-signer-alpha-", "alpha's keys carry its name")
	require.NotContains(t, generation(t, f.st, first.Generation).KeyRef, "signer-")
	require.Empty(t, generation(t, f.st, first.Generation).Signer)
	require.Equal(t, map[uint64]store.GenerationState{first.Generation: store.StateActive, alpha.Generation: store.StateActive},
		lineageStates(t, f.st), "starting the alpha lineage does not retire the default one")
	require.Equal(t, first.Generation, f.m.Active().Generation)
	require.Equal(t, "intermediate:alpha", sm.RotationStatus().CA, "each lineage reports its own rotation")
	require.Equal(t, "intermediate", f.m.RotationStatus().CA)

	// Alpha's shorter intermediate rotates first; the default is untouched.
	alpha2, err := sm.RotateNow(ctx, "test")
	require.NoError(t, err)
	require.Equal(t, map[uint64]store.GenerationState{
		first.Generation: store.StateActive, alpha.Generation: store.StateRetired, alpha2.Generation: store.StateActive,
	}, lineageStates(t, f.st))
	require.Equal(t, scfg.Intermediate.CommonName, alpha2.Bundle.Cert.Subject.CommonName)

	// A restart of the default Manager loads the default's generation, not
	// the newer alpha one, and retains nothing of alpha's.
	restarted := New(Options{Config: f.cfg, Keys: f.km, Store: f.st, Root: f.src, Clock: f.clk,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	got, err := restarted.Start(ctx)
	require.NoError(t, err)
	require.Equal(t, first.Generation, got.Generation)
	require.Empty(t, restarted.retainedMaterial(), "alpha's retired generation is not the default's to publish")

	// The default rotates; alpha's active generation stays active.
	next, err := f.m.RotateNow(ctx, "test")
	require.NoError(t, err)
	require.Equal(t, map[uint64]store.GenerationState{
		first.Generation: store.StateRetired, alpha.Generation: store.StateRetired,
		alpha2.Generation: store.StateActive, next.Generation: store.StateActive,
	}, lineageStates(t, f.st))
	require.Equal(t, f.cfg.Intermediate.CommonName, next.Bundle.Cert.Subject.CommonName)

	// A generation alpha prepared is never the default's successor.
	prepared, err := sm.mint(ctx)
	require.NoError(t, err)
	succ, err := f.m.preparedSuccessor(ctx, next.Generation, next.Bundle.Roots)
	require.NoError(t, err)
	require.Nil(t, succ, "alpha's prepared generation %d is not the default's to resume", prepared.ID)

	// A restarted alpha Manager resumes with alpha2.
	again := New(Options{Config: &scfg, Keys: f.km, Store: f.st, Root: f.src, Clock: f.clk, Signer: "alpha",
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	got, err = again.Start(ctx)
	require.NoError(t, err)
	require.Equal(t, alpha2.Generation, got.Generation)
	require.Len(t, again.retainedMaterial(), 1)
	require.Equal(t, alpha.Generation, again.retainedMaterial()[0].Generation)
}

// lineageStates is each generation's state, checking one active generation
// per signer lineage.
func lineageStates(t *testing.T, st store.Generations) map[uint64]store.GenerationState {
	t.Helper()
	gens, err := st.ListGenerations(context.Background())
	require.NoError(t, err)
	out := map[uint64]store.GenerationState{}
	active := map[string]int{}
	for _, g := range gens {
		out[g.ID] = g.State()
		if g.Active() {
			active[g.Signer]++
		}
	}
	for s, n := range active {
		require.Equal(t, 1, n, "lineage %q: %v", s, out)
	}
	return out
}

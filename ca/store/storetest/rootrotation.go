package storetest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/store"
)

// RootRotationStore is a backend of the root-rotation journal.
type RootRotationStore interface {
	store.RootRotations
	Close() error
}

// RootRotation is a root-rotation record with every field set.
func RootRotation(phase string) store.RootRotation {
	return store.RootRotation{
		ID:             "root-20260501T120000Z",
		Phase:          phase,
		OldRootsDER:    [][]byte{{0x30, 0x01, 0xa1}, {0x30, 0x01, 0xa2}},
		NewRootDER:     []byte{0x30, 0x01, 0xb1},
		NewRootSource:  []byte(`{"source":"file","file":{"rootCert":"/b/root-cert.pem","rootKey":"/b/root-key.pem"}}`),
		OldRootSource:  []byte(`{"source":"file","file":{"rootCert":"/a/root-cert.pem","rootKey":"/a/root-key.pem"}}`),
		StartedAt:      T0,
		PhaseStartedAt: T0.Add(time.Hour),
		Paused:         true,
		Waits:          store.RootRotationWaits{WorkloadsMin: time.Hour, WorkloadsMax: 12 * time.Hour, TTLMax: 24 * time.Hour},
		Error:          "RefreshRoots: the publisher is down",
		History: []store.RootRotationEvent{
			{At: T0, Phase: "publish-both-roots", Event: "start", By: "cli:uid:1000", Detail: "new root B"},
			{At: T0.Add(time.Hour), Phase: phase, Event: "enter", By: "controller"},
		},
	}
}

// RequireSameRootRotation compares two records (times with Equal).
func RequireSameRootRotation(t *testing.T, want, got store.RootRotation) {
	t.Helper()
	require.True(t, want.StartedAt.Equal(got.StartedAt), "StartedAt %v != %v", want.StartedAt, got.StartedAt)
	require.True(t, want.PhaseStartedAt.Equal(got.PhaseStartedAt), "PhaseStartedAt %v != %v", want.PhaseStartedAt, got.PhaseStartedAt)
	require.Len(t, got.History, len(want.History))
	for i := range want.History {
		require.True(t, want.History[i].At.Equal(got.History[i].At), "History[%d].At", i)
		want.History[i].At, got.History[i].At = time.Time{}, time.Time{}
	}
	want.StartedAt, want.PhaseStartedAt = time.Time{}, time.Time{}
	got.StartedAt, got.PhaseStartedAt = time.Time{}, time.Time{}
	require.Equal(t, want, got)
}

// RunRootRotations runs the conformance cases of the root-rotation
// journal. open returns a new, empty store; the suite closes it.
func RunRootRotations(t *testing.T, open func(t *testing.T) RootRotationStore) {
	run := func(name string, f func(t *testing.T, s RootRotationStore)) {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() { _ = s.Close() })
			f(t, s)
		})
	}
	run("RootRotations/NoneIsNotFound", func(t *testing.T, s RootRotationStore) {
		_, err := s.GetRootRotation(context.Background())
		require.ErrorIs(t, err, store.ErrNotFound)
	})
	run("RootRotations/PutReplacesTheWholeRecord", func(t *testing.T, s RootRotationStore) {
		ctx := context.Background()
		a := RootRotation("publish-both-roots")
		require.NoError(t, s.PutRootRotation(ctx, a, store.Fence{}))
		got, err := s.GetRootRotation(ctx)
		require.NoError(t, err)
		RequireSameRootRotation(t, RootRotation("publish-both-roots"), got)

		b := RootRotation("switch-intermediate")
		b.Paused, b.Error = false, ""
		b.History = append(b.History, store.RootRotationEvent{At: T0.Add(2 * time.Hour), Phase: "switch-intermediate", Event: "advance", By: "cli:uid:0"})
		require.NoError(t, s.PutRootRotation(ctx, b, store.Fence{}))
		got, err = s.GetRootRotation(ctx)
		require.NoError(t, err)
		want := RootRotation("switch-intermediate")
		want.Paused, want.Error = false, ""
		want.History = append(want.History, store.RootRotationEvent{At: T0.Add(2 * time.Hour), Phase: "switch-intermediate", Event: "advance", By: "cli:uid:0"})
		RequireSameRootRotation(t, want, got)
	})
	run("RootRotations/BadInputStoresNothing", func(t *testing.T, s RootRotationStore) {
		ctx := context.Background()
		good := RootRotation("wait-for-workloads")
		require.NoError(t, s.PutRootRotation(ctx, good, store.Fence{}))
		for name, mutate := range map[string]func(r *store.RootRotation){
			"no id":       func(r *store.RootRotation) { r.ID = "" },
			"long id":     func(r *store.RootRotation) { r.ID = strings.Repeat("x", 129) },
			"no phase":    func(r *store.RootRotation) { r.Phase = "" },
			"no old root": func(r *store.RootRotation) { r.OldRootsDER = nil },
			"no new root": func(r *store.RootRotation) { r.NewRootDER = nil },
			"history": func(r *store.RootRotation) {
				r.History = make([]store.RootRotationEvent, store.MaxRootRotationHistory+1)
			},
			"too big": func(r *store.RootRotation) { r.NewRootDER = make([]byte, store.MaxRootRotationBytes) },
		} {
			bad := RootRotation("remove-old-root")
			mutate(&bad)
			require.Error(t, s.PutRootRotation(ctx, bad, store.Fence{}), name)
			got, err := s.GetRootRotation(ctx)
			require.NoError(t, err)
			RequireSameRootRotation(t, RootRotation("wait-for-workloads"), got)
		}
	})
	run("RootRotations/FencedWritesRefuseAStaleHolder", func(t *testing.T, s RootRotationStore) {
		ctx := context.Background()
		a, b := store.Fence{Holder: "replica-a", Token: 2}, store.Fence{Holder: "replica-b", Token: 3}
		require.NoError(t, s.PutRootRotation(ctx, RootRotation("publish-both-roots"), a))
		require.NoError(t, s.PutRootRotation(ctx, RootRotation("switch-intermediate"), b), "a newer holder writes")
		for name, f := range map[string]store.Fence{
			"the old holder":               a,
			"another holder, same token":   {Holder: "replica-c", Token: 3},
			"a holder with an older token": {Holder: "replica-b", Token: 1},
		} {
			require.ErrorIs(t, s.PutRootRotation(ctx, RootRotation("remove-old-root"), f), store.ErrFenced, name)
			got, err := s.GetRootRotation(ctx)
			require.NoError(t, err)
			RequireSameRootRotation(t, RootRotation("switch-intermediate"), got)
		}
		require.NoError(t, s.PutRootRotation(ctx, RootRotation("wait-out-ttl"), b), "the holder writes again")
		// The fence is the one SwitchGeneration checks: the old holder
		// cannot activate a generation either.
		if sw, ok := s.(interface {
			store.GenerationSwitcher
			store.Generations
		}); ok {
			g, err := sw.AddGeneration(ctx, gen(1))
			require.NoError(t, err)
			require.NoError(t, sw.MarkGenerationVerified(ctx, g.ID, T0))
			require.ErrorIs(t, sw.SwitchGeneration(ctx, g.ID, 0, a, T0), store.ErrFenced)
		}
	})
}

// RunRootRotationsRestart checks that an acknowledged record survives
// closing and reopening the store.
func RunRootRotationsRestart(t *testing.T, open func() RootRotationStore) {
	ctx := context.Background()
	s := open()
	require.NoError(t, s.PutRootRotation(ctx, RootRotation("publish-both-roots"), store.Fence{}))
	require.NoError(t, s.PutRootRotation(ctx, RootRotation("wait-out-ttl"), store.Fence{}))
	require.NoError(t, s.Close())
	s = open()
	defer s.Close()
	got, err := s.GetRootRotation(ctx)
	require.NoError(t, err)
	RequireSameRootRotation(t, RootRotation("wait-out-ttl"), got)
}

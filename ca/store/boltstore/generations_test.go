package boltstore

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/store"
)

func generation(src string) store.Generation {
	return store.Generation{
		CertDER:     []byte("cert-" + src),
		ChainDER:    [][]byte{[]byte("root-" + src)},
		KeyRef:      "/var/lib/meshca/keys/" + src + ".key",
		Source:      src,
		Fingerprint: "fp-" + src,
		CreatedAt:   t0,
	}
}

func TestAddGeneration_AssignsSequentialIDs(t *testing.T) {
	s, _ := openStore(t)
	ctx := context.Background()
	for want := uint64(1); want <= 3; want++ {
		g, err := s.AddGeneration(ctx, generation("file-minted"))
		require.NoError(t, err)
		require.Equal(t, want, g.ID)
		require.False(t, g.Active(), "a new generation is not active")
	}
	gens, err := s.ListGenerations(ctx)
	require.NoError(t, err)
	require.Len(t, gens, 3)
	for i, g := range gens {
		require.Equal(t, uint64(i+1), g.ID)
		require.Equal(t, []byte("cert-file-minted"), g.CertDER)
		require.Equal(t, [][]byte{[]byte("root-file-minted")}, g.ChainDER)
		require.Equal(t, "/var/lib/meshca/keys/file-minted.key", g.KeyRef)
		require.True(t, g.CreatedAt.Equal(t0))
	}
}

func TestAddGeneration_IDsSurviveReopen(t *testing.T) {
	s, path := openStore(t)
	ctx := context.Background()
	_, err := s.AddGeneration(ctx, generation("a"))
	require.NoError(t, err)
	require.NoError(t, s.Close())
	s2, err := Open(path)
	require.NoError(t, err)
	defer s2.Close()
	g, err := s2.AddGeneration(ctx, generation("b"))
	require.NoError(t, err)
	require.Equal(t, uint64(2), g.ID)
}

func TestActivateGeneration_RetiresThePreviousActiveOne(t *testing.T) {
	s, _ := openStore(t)
	ctx := context.Background()
	g1, err := s.AddGeneration(ctx, generation("one"))
	require.NoError(t, err)
	g2, err := s.AddGeneration(ctx, generation("two"))
	require.NoError(t, err)
	_, err = s.AddGeneration(ctx, generation("three"))
	require.NoError(t, err)

	at1, at2 := t0, t0.Add(time.Hour)
	require.NoError(t, s.ActivateGeneration(ctx, g1.ID, at1))
	gens, err := s.ListGenerations(ctx)
	require.NoError(t, err)
	require.True(t, gens[0].Active())
	require.True(t, gens[0].ActivatedAt.Equal(at1))
	require.False(t, gens[1].Active())
	require.False(t, gens[2].Active())

	require.NoError(t, s.ActivateGeneration(ctx, g2.ID, at2))
	gens, err = s.ListGenerations(ctx)
	require.NoError(t, err)
	require.False(t, gens[0].Active())
	require.True(t, gens[0].RetiredAt.Equal(at2), "the previous active generation retires at the switch")
	require.True(t, gens[0].ActivatedAt.Equal(at1), "its activation time is kept")
	require.True(t, gens[1].Active())
	require.True(t, gens[1].ActivatedAt.Equal(at2))
	require.True(t, gens[2].ActivatedAt.IsZero(), "an untouched generation stays untouched")
	require.True(t, gens[2].RetiredAt.IsZero())

	active := 0
	for _, g := range gens {
		if g.Active() {
			active++
		}
	}
	require.Equal(t, 1, active)
}

// A retired generation is never activated again (the rotation journal
// only moves forward: prepared, active, retired); the attempt changes
// nothing.
func TestActivateGeneration_RefusesARetiredGeneration(t *testing.T) {
	s, _ := openStore(t)
	ctx := context.Background()
	g1, err := s.AddGeneration(ctx, generation("one"))
	require.NoError(t, err)
	g2, err := s.AddGeneration(ctx, generation("two"))
	require.NoError(t, err)
	require.NoError(t, s.ActivateGeneration(ctx, g1.ID, t0))
	require.NoError(t, s.ActivateGeneration(ctx, g2.ID, t0.Add(time.Hour)))
	require.ErrorIs(t, s.ActivateGeneration(ctx, g1.ID, t0.Add(2*time.Hour)), store.ErrRetired)

	gens, err := s.ListGenerations(ctx)
	require.NoError(t, err)
	require.False(t, gens[0].Active())
	require.True(t, gens[0].RetiredAt.Equal(t0.Add(time.Hour)))
	require.True(t, gens[1].Active())
	require.True(t, gens[1].RetiredAt.IsZero())
}

func TestActivateGeneration_UnknownIDIsNotFound(t *testing.T) {
	s, _ := openStore(t)
	err := s.ActivateGeneration(context.Background(), 42, t0)
	require.ErrorIs(t, err, store.ErrNotFound)
	require.ErrorContains(t, err, "generation 42")
}

// Records written before the rotation journal (no verifiedAt, every
// generation activated as it was added) read with the right states.
func TestGenerations_RecordsFromBeforeTheJournal(t *testing.T) {
	var g store.Generation
	require.NoError(t, json.Unmarshal([]byte(`{"id":1,"certDER":"Y2VydA==","chainDER":null,"keyRef":"k","source":"file-minted","fingerprint":"fp","createdAt":"2026-05-01T12:00:00Z","activatedAt":"2026-05-01T12:00:00Z"}`), &g))
	require.Equal(t, store.StateActive, g.State())
	require.True(t, g.VerifiedAt.IsZero())
	g.RetiredAt = t0
	require.Equal(t, store.StateRetired, g.State())
	g.ActivatedAt, g.RetiredAt = time.Time{}, time.Time{}
	require.Equal(t, store.StatePrepared, g.State())
}

func TestListGenerations_EmptyStore(t *testing.T) {
	s, _ := openStore(t)
	gens, err := s.ListGenerations(context.Background())
	require.NoError(t, err)
	require.Empty(t, gens)
}

package storetest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/store"
)

// AlertState is alert state i with every field set.
func AlertState(i int) store.AlertState {
	return store.AlertState{
		Key:         "IntermediateExpiring/generation-" + string(rune('a'+i)),
		Rule:        "IntermediateExpiring",
		Object:      "generation-" + string(rune('a'+i)),
		Severity:    "warning",
		Summary:     "the intermediate expires soon",
		Action:      "meshca rotates it",
		Expires:     T0.Add(72 * time.Hour),
		Fingerprint: "f" + string(rune('a'+i)),
		Status:      store.AlertFiring,
		StartsAt:    T0,
		NotifiedAt:  T0.Add(time.Minute),
		Pending:     "fire",
		Seq:         uint64(i + 1),
	}
}

// RequireSameAlertState compares two alert states (times with Equal).
func RequireSameAlertState(t *testing.T, want, got store.AlertState) {
	t.Helper()
	for _, p := range []struct {
		name string
		w, g time.Time
	}{{"Expires", want.Expires, got.Expires}, {"StartsAt", want.StartsAt, got.StartsAt}, {"EndsAt", want.EndsAt, got.EndsAt}, {"NotifiedAt", want.NotifiedAt, got.NotifiedAt}} {
		require.True(t, p.w.Equal(p.g), "%s of %s: %v != %v", p.name, want.Key, p.w, p.g)
	}
	want.Expires, want.StartsAt, want.EndsAt, want.NotifiedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	got.Expires, got.StartsAt, got.EndsAt, got.NotifiedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	require.Equal(t, want, got)
}

func testAlertStatesRoundTrip(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, err := s.GetAlertState(ctx, AlertState(0).Key)
	require.ErrorIs(t, err, store.ErrNotFound)
	list, err := s.ListAlertStates(ctx)
	require.NoError(t, err)
	require.Empty(t, list)

	b, a := AlertState(1), AlertState(0)
	require.NoError(t, s.PutAlertState(ctx, b))
	require.NoError(t, s.PutAlertState(ctx, a))
	got, err := s.GetAlertState(ctx, a.Key)
	require.NoError(t, err)
	RequireSameAlertState(t, a, got)

	// A put replaces the whole record.
	a.Status, a.EndsAt, a.Pending, a.Seq = store.AlertResolved, T0.Add(time.Hour), "resolved", 7
	a.Action = ""
	require.NoError(t, s.PutAlertState(ctx, a))
	got, err = s.GetAlertState(ctx, a.Key)
	require.NoError(t, err)
	RequireSameAlertState(t, a, got)

	list, err = s.ListAlertStates(ctx)
	require.NoError(t, err)
	require.Len(t, list, 2)
	RequireSameAlertState(t, a, list[0]) // key order
	RequireSameAlertState(t, b, list[1])

	require.NoError(t, s.DeleteAlertState(ctx, a.Key))
	require.NoError(t, s.DeleteAlertState(ctx, a.Key), "deleting a missing key")
	_, err = s.GetAlertState(ctx, a.Key)
	require.ErrorIs(t, err, store.ErrNotFound)
	list, err = s.ListAlertStates(ctx)
	require.NoError(t, err)
	require.Len(t, list, 1)
	RequireSameAlertState(t, b, list[0])
}

func testAlertStatesBadInput(t *testing.T, s store.Store) {
	ctx := context.Background()
	good := AlertState(0)
	require.NoError(t, s.PutAlertState(ctx, good))
	for name, mutate := range map[string]func(*store.AlertState){
		"empty key":      func(a *store.AlertState) { a.Key = "" },
		"key too long":   func(a *store.AlertState) { a.Key = strings.Repeat("k", store.MaxAlertKeyBytes+1) },
		"unknown status": func(a *store.AlertState) { a.Status = "pending" },
		"no status":      func(a *store.AlertState) { a.Status = "" },
	} {
		bad := good
		bad.Summary = "changed"
		mutate(&bad)
		require.Error(t, s.PutAlertState(ctx, bad), name)
	}
	list, err := s.ListAlertStates(ctx)
	require.NoError(t, err)
	require.Len(t, list, 1, "a refused put stores nothing")
	RequireSameAlertState(t, good, list[0])
}

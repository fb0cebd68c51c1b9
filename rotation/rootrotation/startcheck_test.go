package rootrotation

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/caerr"
	"github.com/meshca/meshca/ca/store"
)

// B must outlive the rotation: its longest waits (phase 2's maximum and
// phase 4's) and then an intermediate's lifetime under it. The harness's
// waits are 12h10m and 48h, its intermediates live 30 days.
func TestStart_RefusesARootThatExpiresBeforeTheRotationEnds(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	need := 12*time.Hour + 10*time.Minute + 48*time.Hour + 30*24*time.Hour
	for name, lifetime := range map[string]time.Duration{
		"in minutes":             5 * time.Minute,
		"before the waits end":   60 * time.Hour,
		"a minute short of need": need + time.Minute - time.Minute,
	} {
		t.Run(name, func(t *testing.T) {
			short := newFileRoot(t, "root short", t0.Add(-time.Minute), lifetime)
			_, err := h.c.Start(ctx, StartRequest{NewRoot: short.spec, By: "test"})
			require.Error(t, err)
			require.Equal(t, caerr.InvalidArgument, caerr.CodeOf(err), "%v", err)
			require.ErrorContains(t, err, "expires "+short.cert.NotAfter.UTC().Format(time.RFC3339))
			require.ErrorContains(t, err, "before the rotation and an intermediate under it end")
			_, err = h.st.GetRootRotation(ctx)
			require.ErrorIs(t, err, store.ErrNotFound, "nothing journaled")
		})
	}
	// A root that lives a minute longer than that is accepted.
	long := newFileRoot(t, "root long", t0.Add(-time.Minute), need+2*time.Minute)
	_, err := h.c.Start(ctx, StartRequest{NewRoot: long.spec, By: "test"})
	require.NoError(t, err)
	require.Equal(t, long.cert.Raw, h.journal().NewRootDER)
}

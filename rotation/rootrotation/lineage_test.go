package rootrotation

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A signer with its own intermediate moves with the root rotation: its
// roots are published with the default's in phases 1 and 5, and it
// switches to an intermediate under B in phase 3. A lineage that fails
// to switch holds the phase; the retry switches only what has not
// switched yet, and never leaves an active intermediate under A.
func TestController_EveryLineageSwitchesOnce(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	gw := &fakeManager{signer: "gateways", src: h.src.RootSource(), st: h.st, clk: h.clk}
	_, err := gw.RotateNow(ctx, "initial")
	require.NoError(t, err)
	h.c.AddLineage("gateways", gw)

	h.issue("01", 24*time.Hour) // a leaf under A holds phase 4
	h.start()
	h.step()
	h.requirePhase(PhaseWaitWorkloads)
	require.Equal(t, 1, h.mgr.refreshes)
	require.Equal(t, 1, gw.refreshes, "the separate signer publishes both roots too")
	require.Equal(t, pemOf(h.a.cert, h.b.cert), gw.lastPublished())

	_, err = h.c.Advance(ctx, "op")
	require.NoError(t, err)
	h.requirePhase(PhaseSwitch)
	gw.setFail(errors.New("gateways key store unavailable"))
	st := h.step()
	h.requirePhase(PhaseSwitch)
	require.Contains(t, st.Problem, "switch the intermediate of signer gateways (RotateNow): gateways key store unavailable")
	require.Equal(t, 2, h.mgr.rotations, "the default switched")
	require.NoError(t, h.mgr.bundle.Cert.CheckSignatureFrom(h.b.cert))

	gw.setFail(nil)
	h.clk.Step(time.Minute)
	h.step()
	h.requirePhase(PhaseWaitTTL)
	require.Equal(t, 2, h.mgr.rotations, "the default is not switched again")
	require.Equal(t, 2, gw.rotations)
	require.NoError(t, gw.bundle.Cert.CheckSignatureFrom(h.b.cert), "the gateways intermediate is under B")
	for _, signer := range []string{"", "gateways"} {
		under, err := h.c.activeUnderNew(ctx, signer)
		require.NoError(t, err)
		require.True(t, under, "lineage %q", signer)
	}

	h.clk.Step(25 * time.Hour)
	h.step()
	h.requirePhase(PhaseDone)
	require.Equal(t, pemOf(h.b.cert), gw.lastPublished(), "phase 5 removes A from the separate signer's roots")
}

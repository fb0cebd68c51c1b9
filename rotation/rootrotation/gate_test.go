package rootrotation

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A roots gate (AddRootsGate: serve's check that every cluster of the
// clusters section holds the roots in force) holds phase 1 until it
// passes, also when the default signer is the only lineage (a mesh whose
// other clusters are all meshca-signs), so that no intermediate moves
// under B before every cluster trusts A and B.
func TestController_RootsGateHoldsThePublishPhase(t *testing.T) {
	h := newHarness(t)
	var (
		mu    sync.Mutex
		gated = errors.New(`cluster "west": ConfigMap istio-system/istio-ca-root-cert does not hold the root B yet`)
		calls int
	)
	h.c.AddRootsGate(func(context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		calls++
		return gated
	})
	h.issue("01", 24*time.Hour)
	h.start()
	st := h.step()
	h.requirePhase(PhasePublish)
	require.Contains(t, st.Problem, "does not hold the root B yet")
	require.Equal(t, 1, calls)
	require.GreaterOrEqual(t, h.mgr.refreshes, 1, "the roots are published before the gate reads them back")

	mu.Lock()
	gated = nil
	mu.Unlock()
	h.clk.Step(time.Minute)
	h.step()
	h.requirePhase(PhaseWaitWorkloads)
	require.Equal(t, 2, calls)
}

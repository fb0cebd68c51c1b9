package rootrotation

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// uncountedManager is a lineage whose leaves meshca does not issue (a
// plug-in cluster's istiod signs them with its intermediate).
type uncountedManager struct{ *fakeManager }

func (uncountedManager) UncountedLeaves() bool { return true }

// With a lineage whose leaves meshca cannot count, wait-out-ttl does not
// end because meshca's own leaves under the old root are gone: it lasts
// ttlMaxWait (or until 'meshca rotate advance'), and says why.
func TestController_UncountedLineageWaitsOutTTLMax(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	east := uncountedManager{&fakeManager{signer: "cluster:east", src: h.src.RootSource(), st: h.st, clk: h.clk}}
	_, err := east.RotateNow(ctx, "initial")
	require.NoError(t, err)
	h.c.AddLineage("cluster:east", east)

	h.start()
	h.step()
	h.requirePhase(PhaseWaitWorkloads)
	_, err = h.c.Advance(ctx, "op")
	require.NoError(t, err)
	st := h.step()
	h.requirePhase(PhaseWaitTTL)
	require.NoError(t, east.bundle.Cert.CheckSignatureFrom(h.b.cert), "east's intermediate is under B")
	require.Contains(t, st.Waiting, "cluster:east")

	ttlMax := h.journal().Waits.TTLMax
	h.clk.Step(ttlMax - time.Minute)
	h.step()
	h.requirePhase(PhaseWaitTTL)
	require.Equal(t, pemOf(h.a.cert, h.b.cert), east.lastPublished(), "east still trusts A")

	h.clk.Step(2 * time.Minute)
	h.step()
	h.requirePhase(PhaseDone)
	require.Equal(t, pemOf(h.b.cert), east.lastPublished())
}

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

// With trustBundle.publishCACerts (Istio's plug-in CA) istiod signs the
// workloads with the default lineage's intermediate, so meshca holds no
// record of their leaves: no count can end a phase. Waiting for workloads
// lasts workloadsMaxWait and waiting out the TTL lasts ttlMaxWait (or
// until 'meshca rotate advance'), and A stays in the roots until then:
// removing it earlier fails every handshake with a leaf istiod issued
// under A's intermediate.
func TestController_PlugInDefaultLineageIsUncounted(t *testing.T) {
	h := newHarness(t)
	h.c.o.DefaultUncounted = true
	h.start()
	h.step()
	h.requirePhase(PhaseWaitWorkloads)
	w := h.journal().Waits
	h.clk.Step(w.WorkloadsMin + time.Minute)
	st := h.step()
	h.requirePhase(PhaseWaitWorkloads)
	require.Contains(t, st.Waiting, "are signed outside meshca and not counted")

	h.clk.Step(w.WorkloadsMax - w.WorkloadsMin)
	h.step()
	h.requirePhase(PhaseWaitTTL)
	require.NoError(t, h.mgr.bundle.Cert.CheckSignatureFrom(h.b.cert), "the default intermediate is under B")
	h.clk.Step(w.TTLMax - time.Minute)
	st = h.step()
	h.requirePhase(PhaseWaitTTL)
	require.Contains(t, st.Waiting, "are signed outside meshca and not counted")
	require.Equal(t, pemOf(h.a.cert, h.b.cert), h.mgr.lastPublished(), "A is still trusted")

	h.clk.Step(2 * time.Minute)
	h.step()
	h.requirePhase(PhaseDone)
	require.Equal(t, pemOf(h.b.cert), h.mgr.lastPublished())
}

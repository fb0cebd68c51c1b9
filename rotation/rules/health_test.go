package rules

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	testclock "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/crl"
	"github.com/meshca/meshca/rotation"
)

// A CRL whose nextUpdate has passed fires until a newer one is served.
func TestCRLStale(t *testing.T) {
	clk := testclock.NewFakeClock(T0)
	var mu sync.Mutex
	served := []crl.Published{
		{Scope: "gen-3", Number: 7, ThisUpdate: T0, NextUpdate: T0.Add(2 * time.Hour)},
		{Scope: "gen-3", Delta: true, Number: 8, ThisUpdate: T0, NextUpdate: T0.Add(2 * time.Hour)},
		{Scope: "root-external", Number: 40, ThisUpdate: T0, NextUpdate: T0.Add(5 * time.Hour)},
	}
	rule := &CRLStale{CRLs: func() []crl.Published { mu.Lock(); defer mu.Unlock(); return served }}
	sw := startSweeper(t, clk, nil, rule)
	require.Empty(t, sw.firing())
	sw.to(t, T0.Add(2*time.Hour))
	require.Empty(t, sw.firing(), "nextUpdate itself is not past")
	sw.to(t, T0.Add(3*time.Hour))
	require.Equal(t, map[string]string{"CRLStale/CRL gen-3": "critical", "CRLStale/CRL gen-3 delta": "critical"}, sw.firing())
	st := firingState(t, sw.e, "CRLStale/CRL gen-3")
	require.Equal(t, "The full CRL gen-3 (number 7) has been past its nextUpdate since 2026-05-01T14:00:00Z; relying parties that check revocation may reject meshca's certificates.", st.Summary)
	require.Equal(t, "meshca rebuilds its CRLs every crl.republishInterval and retries failures; look for CRL build or publish errors in meshca's log.", st.Action)
	sw.to(t, T0.Add(6*time.Hour))
	require.Equal(t, "meshca takes the root's CRL from its source (Vault, crl.rootCRL) and refreshes it; renew the root's CRL there.",
		firingState(t, sw.e, "CRLStale/CRL root-external").Action)
	mu.Lock()
	served = []crl.Published{{Scope: "gen-3", Number: 9, ThisUpdate: T0.Add(6 * time.Hour), NextUpdate: T0.Add(9 * time.Hour)}}
	mu.Unlock()
	sw.to(t, T0.Add(7*time.Hour))
	require.Empty(t, sw.firing())
}

// A root source that fails its health check longer than the threshold
// fires; one that recovers is cleared, and a short outage never fires.
func TestRootSourceUnreachable(t *testing.T) {
	clk := testclock.NewFakeClock(T0)
	var mu sync.Mutex
	var health error
	set := func(err error) { mu.Lock(); health = err; mu.Unlock() }
	rule := &RootSourceHealth{Kind: "vault", Health: func() error { mu.Lock(); defer mu.Unlock(); return health }, After: 3 * time.Hour}
	sw := startSweeper(t, clk, nil, rule)
	set(errors.New("root source unavailable: dial tcp 10.0.0.9:8200: connection refused"))
	sw.to(t, T0.Add(2*time.Hour))
	require.Empty(t, sw.firing())
	set(nil)
	sw.to(t, T0.Add(3*time.Hour))
	set(errors.New("root source unavailable: dial tcp 10.0.0.9:8200: connection refused"))
	sw.to(t, T0.Add(6*time.Hour))
	require.Empty(t, sw.firing(), "failing since 4h, not longer than 3h at 6h")
	sw.to(t, T0.Add(7*time.Hour))
	require.Equal(t, map[string]string{"RootSourceUnreachable/root source vault": "critical"}, sw.firing())
	st := firingState(t, sw.e, "RootSourceUnreachable/root source vault")
	require.Equal(t, "The root source (vault) has failed its health check since 2026-05-01T16:00:00Z: root source unavailable: dial tcp 10.0.0.9:8200: connection refused", st.Summary)
	require.Equal(t, "meshca keeps signing with the intermediate it holds and retries; it cannot mint a new intermediate until the root source answers.", st.Action)
	set(nil)
	sw.to(t, T0.Add(8*time.Hour))
	require.Empty(t, sw.firing())
}

// The other root's source of a root rotation is alerted on as its own
// object, with its own outage: the minting source's health is not it.
func TestRootSourceUnreachable_TheOtherRootsSource(t *testing.T) {
	clk := testclock.NewFakeClock(T0)
	var mu sync.Mutex
	var health, other error
	set := func(h, o error) { mu.Lock(); health, other = h, o; mu.Unlock() }
	rule := &RootSourceHealth{Kind: "vault", After: 3 * time.Hour,
		Health: func() error { mu.Lock(); defer mu.Unlock(); return health },
		Other:  func() error { mu.Lock(); defer mu.Unlock(); return other }}
	sw := startSweeper(t, clk, nil, rule)
	set(nil, errors.New("root source unavailable: dial tcp 10.0.0.8:8200: connection refused"))
	sw.to(t, T0.Add(2*time.Hour))
	require.Empty(t, sw.firing())
	sw.to(t, T0.Add(4*time.Hour))
	const otherKey = "RootSourceUnreachable/root source of the other root in force"
	require.Equal(t, map[string]string{otherKey: "critical"}, sw.firing())
	st := firingState(t, sw.e, otherKey)
	require.Equal(t, "The source of the other root in force during the root rotation has failed its health check since 2026-05-01T13:00:00Z: root source unavailable: dial tcp 10.0.0.8:8200: connection refused", st.Summary)
	require.Contains(t, st.Action, "cannot refresh it")
	set(errors.New("sealed"), errors.New("root source unavailable: dial tcp 10.0.0.8:8200: connection refused"))
	sw.to(t, T0.Add(8*time.Hour))
	require.Equal(t, map[string]string{otherKey: "critical", "RootSourceUnreachable/root source vault": "critical"}, sw.firing())
	set(errors.New("sealed"), nil) // the rotation moved on, or the source is back
	sw.to(t, T0.Add(9*time.Hour))
	require.Equal(t, map[string]string{"RootSourceUnreachable/root source vault": "critical"}, sw.firing())

	// A new Lease term times the outage afresh: another replica may have
	// seen it end meanwhile.
	var f Forgetter = rule
	f.Forget()
	v, err := rule.Evaluate(context.Background(), T0.Add(10*time.Hour))
	require.NoError(t, err)
	require.Empty(t, v, "failing since this evaluation, not since 9h earlier")
}

type fakeReporter struct {
	mu sync.Mutex
	st rotation.Status
}

func (f *fakeReporter) RotationStatus() rotation.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st
}
func (f *fakeReporter) set(st rotation.Status) { f.mu.Lock(); f.st = st; f.mu.Unlock() }

// A stuck rotation fires, a new stuck phase fires again, and recovery clears it.
func TestRotationStuck(t *testing.T) {
	clk := testclock.NewFakeClock(T0)
	inter := &fakeReporter{st: rotation.Status{CA: rotation.CAIntermediate, Phase: "idle"}}
	root := &fakeReporter{st: rotation.Status{CA: rotation.CARoot, Phase: "publish-both-roots", PhaseCode: 1, Since: T0, Paused: true}}
	sw := startSweeper(t, clk, nil, &RotationStuck{Reporters: []rotation.Reporter{inter, root}})
	require.Empty(t, sw.firing(), "a paused rotation is not stuck")
	inter.set(rotation.Status{CA: rotation.CAIntermediate, Phase: "prepared", PhaseCode: 1, Since: T0, Stuck: true, Problem: "minting the successor failed: root source unavailable"})
	sw.to(t, T0.Add(time.Hour))
	require.Equal(t, map[string]string{"RotationStuck/rotation intermediate": "critical"}, sw.firing())
	st := firingState(t, sw.e, "RotationStuck/rotation intermediate")
	require.Equal(t, "The intermediate rotation is stuck in phase prepared (since 2026-05-01T12:00:00Z): minting the successor failed: root source unavailable", st.Summary)
	require.Equal(t, "meshca retries with backoff; see meshca status for the phase and what it waits for.", st.Action)
	require.Equal(t, "prepared@2026-05-01T12:00:00Z", st.Fingerprint)
	inter.set(rotation.Status{CA: rotation.CAIntermediate, Phase: "idle"})
	sw.to(t, T0.Add(2*time.Hour))
	require.Empty(t, sw.firing())
}

// ca-crl.pem over the ConfigMap limit fires with its size, and is cleared
// once it fits.
func TestCRLTooLarge(t *testing.T) {
	clk := testclock.NewFakeClock(T0)
	var mu sync.Mutex
	size := 0
	rule := &CRLTooLarge{Oversize: func() (int, int) { mu.Lock(); defer mu.Unlock(); return size, 1032192 }}
	sw := startSweeper(t, clk, nil, rule)
	require.Empty(t, sw.firing())
	mu.Lock()
	size = 2000000
	mu.Unlock()
	sw.to(t, T0.Add(time.Hour))
	require.Equal(t, map[string]string{"CACRLTooLarge/ca-crl.pem": "critical"}, sw.firing())
	st := firingState(t, sw.e, "CACRLTooLarge/ca-crl.pem")
	require.Equal(t, "ca-crl.pem is 2000000 bytes, over the 1032192-byte limit of the istio-ca-crl ConfigMap and the cacerts Secret; meshca keeps the last good one published.", st.Summary)
	mu.Lock()
	size = 0
	mu.Unlock()
	sw.to(t, T0.Add(2*time.Hour))
	require.Empty(t, sw.firing())
}

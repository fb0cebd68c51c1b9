package crl_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/crl"
)

// Many revocations inside the coalescing window give one rebuild: the
// scope's CRL number moves by exactly two (one full, one delta) and
// ca-crl.pem is published once more.
func TestManager_RevocationsInsideTheWindowGiveOneRebuild(t *testing.T) {
	p := newMgrPKI(t)
	e := newManager(t, p)
	e.run(t)
	gen := crl.ScopeGeneration(p.active)
	var want []string
	for i := range 50 {
		_, is := p.issue(t, p.active, fmt.Sprintf("spiffe://cluster.local/ns/default/sa/app%d", i), p.clk.Now().Add(time.Hour))
		_, err := e.m.Revoke(context.Background(), crl.Request{Serial: is.Serial, Reason: store.ReasonKeyCompromise})
		require.NoError(t, err)
		want = append(want, is.Serial)
	}
	p.clk.Step(199 * time.Millisecond)
	time.Sleep(50 * time.Millisecond) // a rebuild, if wrongly started, has time to show
	full, _ := e.crl(t, gen, false)
	require.Equal(t, uint64(1), full.Number, "no rebuild before the window ends")
	require.Equal(t, 1, e.pub.count())

	// The window ends: the rebuild waits for the next second, as the
	// CRLs made at start have this second's thisUpdate.
	p.clk.Step(time.Millisecond)
	require.Eventually(t, func() bool { return e.clk.Waiters() > e.timers }, 5*time.Second, time.Millisecond)
	require.Equal(t, 1, e.pub.count())
	p.clk.Step(800 * time.Millisecond)
	require.Eventually(t, func() bool { return e.pub.count() == 2 }, 5*time.Second, time.Millisecond)
	full, fl := e.crl(t, gen, false)
	delta, dl := e.crl(t, gen, true)
	require.Equal(t, uint64(2), full.Number, "one rebuild: number 2 for the full and the delta CRL issued together (RFC 5280 section 5.2.3)")
	require.Equal(t, uint64(2), delta.Number)
	require.ElementsMatch(t, want, serialsOf(fl))
	require.ElementsMatch(t, want, serialsOf(dl), "the delta lists what came after its base")
	require.Equal(t, uint64(1), deltaIndicator(t, dl), "the base is still the full CRL made at start")
	for _, entry := range fl.RevokedCertificateEntries {
		require.Equal(t, int(store.ReasonKeyCompromise), entry.ReasonCode)
	}
	// Scopes without revocations were not rebuilt.
	root, _ := e.crl(t, crl.ScopeRoot, false)
	require.Equal(t, uint64(1), root.Number)
	require.Equal(t, 50.0, metricValue(t, e.reg, "meshca_revocations_total", map[string]string{"reason": "keyCompromise"}))
	_, err := e.m.Revoke(context.Background(), crl.Request{Serial: want[0], Reason: store.ReasonSuperseded})
	require.NoError(t, err)
	require.Equal(t, 50.0, metricValue(t, e.reg, "meshca_revocations_total", map[string]string{"reason": "keyCompromise"}), "a repeated revocation is not counted")
	require.Equal(t, 0.0, metricValue(t, e.reg, "meshca_revocations_total", map[string]string{"reason": "superseded"}))
	require.Equal(t, 50.0, metricValue(t, e.reg, "meshca_crl_entries", map[string]string{"scope": gen, "kind": "full"}))

	// Nor does it rebuild a CRL: the CRL number moves only when a CRL's
	// content does. (Before, the repeat started a rebuild: number 3.)
	for range 3 {
		time.Sleep(50 * time.Millisecond) // a rebuild, if wrongly started, arms its timers
		p.clk.Step(time.Second)
	}
	time.Sleep(100 * time.Millisecond)
	require.Equal(t, 2, e.pub.count())
	full, _ = e.crl(t, gen, false)
	require.Equal(t, uint64(2), full.Number)
}

// Revoking a generation lists its intermediate on the root CRL, and
// IsRevoked then holds for its leaves.
func TestManager_GenerationRevocationGoesOnTheRootCRL(t *testing.T) {
	p := newMgrPKI(t)
	e := newManager(t, p)
	e.run(t)
	_, old := p.issue(t, p.retired(), appID, p.clk.Now().Add(time.Hour))
	_, cur := p.issue(t, p.active, appID, p.clk.Now().Add(time.Hour))
	for _, is := range []store.Issuance{old, cur} {
		revoked, err := e.m.IsRevoked(context.Background(), is.Serial)
		require.NoError(t, err)
		require.False(t, revoked)
	}
	_, err := e.m.Revoke(context.Background(), crl.Request{Generation: p.retired(), Reason: store.ReasonCACompromise})
	require.NoError(t, err)
	e.stepPastCoalescing(t, time.Second) // past the coalescing window and into the next second (a rebuild waits for a new thisUpdate)
	require.Eventually(t, func() bool { return e.pub.count() == 2 }, 5*time.Second, time.Millisecond)
	_, rl := e.crl(t, crl.ScopeRoot, false)
	require.Equal(t, []string{hex.EncodeToString(p.gens[p.retired()].cert.SerialNumber.Bytes())}, serialsOf(rl))
	require.Equal(t, int(store.ReasonCACompromise), rl.RevokedCertificateEntries[0].ReasonCode)
	_, gl := e.crl(t, crl.ScopeGeneration(p.retired()), false)
	require.Empty(t, serialsOf(gl), "the leaves need no entries of their own")

	revoked, err := e.m.IsRevoked(context.Background(), old.Serial)
	require.NoError(t, err)
	require.True(t, revoked, "a leaf of the revoked generation")
	revoked, err = e.m.IsRevoked(context.Background(), cur.Serial)
	require.NoError(t, err)
	require.False(t, revoked, "a leaf of the active generation")
}

// Revoking an intermediate by its serial, then by its generation, puts
// it on the root CRL and revokes the generation's leaves.
func TestManager_IntermediateSerialThenGeneration(t *testing.T) {
	p := newMgrPKI(t)
	e := newManager(t, p)
	e.run(t)
	leaf, _ := p.issue(t, p.retired(), appID, p.clk.Now().Add(time.Hour))
	interSerial := hex.EncodeToString(p.gens[p.retired()].cert.SerialNumber.Bytes())
	recs, err := e.m.Revoke(context.Background(), crl.Request{Serial: interSerial, Reason: store.ReasonCACompromise})
	require.NoError(t, err)
	require.Equal(t, store.KindIntermediate, recs[0].Kind)
	require.Equal(t, p.retired(), recs[0].Generation)
	recs, err = e.m.Revoke(context.Background(), crl.Request{Generation: p.retired(), Reason: store.ReasonCACompromise})
	require.NoError(t, err)
	require.Equal(t, store.KindIntermediate, recs[0].Kind)
	e.stepPastCoalescing(t, time.Second) // past the coalescing window and into the next second (a rebuild waits for a new thisUpdate)
	require.Eventually(t, func() bool { return e.pub.count() == 2 }, 5*time.Second, time.Millisecond)
	revoked, err := e.m.IsRevoked(context.Background(), hex.EncodeToString(leaf.SerialNumber.Bytes()))
	require.NoError(t, err)
	require.True(t, revoked, "a leaf of the revoked generation")
	_, rl := e.crl(t, crl.ScopeRoot, false)
	require.Equal(t, []string{interSerial}, serialsOf(rl))
	_, al := e.crl(t, crl.ScopeGeneration(p.active), false)
	require.Empty(t, serialsOf(al), "not on the active generation's CRL as an unknown leaf")
}

func TestManager_IsRevoked(t *testing.T) {
	p := newMgrPKI(t)
	_, is := p.issue(t, p.active, appID, p.clk.Now().Add(time.Hour))
	_, good := p.issue(t, p.active, appID, p.clk.Now().Add(time.Hour))
	// Revoked before the manager starts (another process, the CLI): the
	// set is loaded from the store.
	_, err := crl.NewRevoker(p.st, p.clk, nil).Revoke(context.Background(), crl.Request{Serial: is.Serial})
	require.NoError(t, err)
	e := newManager(t, p)
	for serial, want := range map[string]bool{is.Serial: true, good.Serial: false, "0badcafe": false} {
		got, err := e.m.IsRevoked(context.Background(), serial)
		require.NoError(t, err)
		require.Equal(t, want, got, serial)
	}
	_, err = e.m.Revoke(context.Background(), crl.Request{Serial: "0BADCAFE"})
	require.NoError(t, err)
	got, err := e.m.IsRevoked(context.Background(), "badcafe")
	require.NoError(t, err)
	require.True(t, got, "the set holds the normalised serial at once, before any rebuild")
	_, err = e.m.IsRevoked(context.Background(), "not-hex")
	require.Error(t, err)
}

// The scheduled republish makes new bases, drops entries only once their
// certificate expired more than one CRL period ago, and prunes those from
// the store.
func TestManager_RepublishKeepsUnexpiredAndDropsAfterOnePeriod(t *testing.T) {
	p := newMgrPKI(t)
	now := p.clk.Now()
	_, short := p.issue(t, p.active, appID, now.Add(time.Hour))
	_, long := p.issue(t, p.active, appID, now.Add(72*time.Hour))
	e := newManager(t, p)
	e.run(t)
	for _, is := range []store.Issuance{short, long} {
		_, err := e.m.Revoke(context.Background(), crl.Request{Serial: is.Serial})
		require.NoError(t, err)
	}
	_, err := e.m.Revoke(context.Background(), crl.Request{Serial: "0123456789abcdef"}) // unknown: never dropped
	require.NoError(t, err)
	// The coalesced rebuild first, so that it cannot follow a republish
	// in the same step (its delta would keep the republished base).
	e.stepPastCoalescing(t, time.Second) // past the coalescing window and into the next second (a rebuild waits for a new thisUpdate)
	require.Eventually(t, func() bool { return e.pub.count() == 2 }, 5*time.Second, time.Millisecond)
	gen := crl.ScopeGeneration(p.active)
	republishes := []struct {
		after time.Duration
		want  []string
	}{
		{12 * time.Hour, []string{short.Serial, long.Serial, "0123456789abcdef"}}, // short expired 11h ago: kept
		{12 * time.Hour, []string{short.Serial, long.Serial, "0123456789abcdef"}}, // 23h ago: still within one period
		{12 * time.Hour, []string{long.Serial, "0123456789abcdef"}},               // 35h ago: dropped
		{48 * time.Hour, []string{long.Serial, "0123456789abcdef"}},               // long expired 12h ago: kept
	}
	prev, _ := e.crl(t, gen, false)
	for i, r := range republishes {
		// Step the republish timer in two halves, so that the loop has
		// re-armed it in between.
		target := p.clk.Now().Add(r.after)
		for p.clk.Now().Before(target) {
			n := e.pub.count()
			p.clk.Step(12 * time.Hour)
			require.Eventually(t, func() bool { return e.pub.count() > n }, 5*time.Second, time.Millisecond, "republish %d", i)
			require.Eventually(t, func() bool { return p.clk.HasWaiters() }, 5*time.Second, time.Millisecond)
		}
		full, fl := e.crl(t, gen, false)
		delta, dl := e.crl(t, gen, true)
		require.Greater(t, full.Number, prev.Number)
		require.Equal(t, full.Number, delta.Number, "issued together: one number")
		require.ElementsMatch(t, r.want, serialsOf(fl), "republish %d", i)
		require.Empty(t, serialsOf(dl), "a new base: nothing after it yet")
		require.Equal(t, full.Number, deltaIndicator(t, dl))
		require.Equal(t, p.clk.Now().UTC().Truncate(time.Second).Add(testValidity), fl.NextUpdate)
		prev = full
	}
	_, err = p.st.GetRevocation(context.Background(), short.Serial)
	require.ErrorIs(t, err, store.ErrNotFound, "pruned from the store")
	_, err = p.st.GetRevocation(context.Background(), long.Serial)
	require.NoError(t, err)
	revoked, err := e.m.IsRevoked(context.Background(), short.Serial)
	require.NoError(t, err)
	require.False(t, revoked, "the in-memory set follows the pruning")
}

// A restart (the crash between commit and publication) rebuilds with
// higher numbers and lists every acknowledged revocation.
func TestManager_RestartRebuildsWithHigherNumbers(t *testing.T) {
	p := newMgrPKI(t)
	e := newManager(t, p)
	_, is := p.issue(t, p.active, appID, p.clk.Now().Add(time.Hour))
	_, err := e.m.Revoke(context.Background(), crl.Request{Serial: is.Serial})
	require.NoError(t, err)
	before, _ := e.crl(t, crl.ScopeGeneration(p.active), true)
	// No Run: the coalesced rebuild never happens, as after a kill -9.
	p.reopen(t)
	e2 := newManager(t, p)
	full, fl := e2.crl(t, crl.ScopeGeneration(p.active), false)
	require.Greater(t, full.Number, before.Number)
	require.Equal(t, []string{is.Serial}, serialsOf(fl))
}

// A wall clock stepped back (NTP, a VM restored) must not hold the CRLs
// back until it catches up with the last thisUpdate: dating the new CRLs
// after the last one would put thisUpdate in the future, which relying
// parties refuse, and waiting for the clock would leave a revocation
// unpublished for as long as the step. The CRLs are dated by the clock,
// at once, and their numbers still grow.
func TestManager_AClockSteppedBackDoesNotHoldTheCRLsBack(t *testing.T) {
	p := newMgrPKI(t)
	e := newManager(t, p)
	e.run(t)
	gen := crl.ScopeGeneration(p.active)
	before, _ := e.crl(t, gen, false)
	p.clk.SetTime(p.clk.Now().Add(-10 * time.Minute))
	_, is := p.issue(t, p.active, appID, p.clk.Now().Add(time.Hour))
	_, err := e.m.Revoke(context.Background(), crl.Request{Serial: is.Serial, Reason: store.ReasonKeyCompromise})
	require.NoError(t, err)
	e.stepPastCoalescing(t, time.Second)
	require.Eventually(t, func() bool { return e.pub.count() == 2 }, 5*time.Second, time.Millisecond,
		"the revocation is published without waiting 10 minutes for the clock")
	full, fl := e.crl(t, gen, false)
	require.Greater(t, full.Number, before.Number)
	require.Equal(t, []string{is.Serial}, serialsOf(fl))
	require.Equal(t, p.clk.Now().UTC().Truncate(time.Second), fl.ThisUpdate, "dated by the clock, not ahead of it")
}

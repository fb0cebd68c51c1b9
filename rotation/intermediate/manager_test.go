package intermediate

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/profile"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/rotation"
)

// The successor is prepared exactly at half the active intermediate's
// lifetime, verified, and activated exactly at two thirds (0.66); the
// store holds exactly one active generation after every step.
func TestManager_PreparesAtHalfAndActivatesAtTwoThirds(t *testing.T) {
	f := newFixture(t, nil)
	first, err := f.m.Start(context.Background())
	require.NoError(t, err)
	require.Equal(t, map[uint64]store.GenerationState{first.Generation: store.StateActive}, states(t, f.st))
	f.run(t)
	require.Equal(t, PhaseIdle, f.m.RotationStatus().Phase)
	prepareAt, activateAt := fraction(first, 0.5), fraction(first, 0.66)
	require.Equal(t, prepareAt, f.m.RotationStatus().Next)

	f.at(t, prepareAt.Add(-time.Second))
	require.Equal(t, map[uint64]store.GenerationState{first.Generation: store.StateActive}, states(t, f.st), "nothing is prepared before 50%")

	f.at(t, prepareAt)
	next := first.Generation + 1
	require.Equal(t, map[uint64]store.GenerationState{first.Generation: store.StateActive, next: store.StatePrepared}, states(t, f.st))
	require.True(t, generation(t, f.st, next).VerifiedAt.Equal(prepareAt), "verified when prepared")
	s := f.m.RotationStatus()
	require.Equal(t, PhasePrepared, s.Phase)
	require.Equal(t, 2, s.PhaseCode)
	require.Equal(t, activateAt, s.Next)
	require.False(t, s.Stuck)
	require.Empty(t, f.gotChanges(), "preparing changes nothing that is published")

	f.at(t, activateAt.Add(-time.Second))
	require.Equal(t, map[uint64]store.GenerationState{first.Generation: store.StateActive, next: store.StatePrepared}, states(t, f.st), "nothing is activated before 66%")

	f.at(t, activateAt)
	require.Equal(t, map[uint64]store.GenerationState{first.Generation: store.StateRetired, next: store.StateActive}, states(t, f.st))
	require.True(t, generation(t, f.st, next).ActivatedAt.Equal(activateAt))
	changes := f.gotChanges()
	require.Len(t, changes, 1)
	require.Equal(t, rotation.ReasonActivated, changes[0].Reason)
	require.Equal(t, next, changes[0].Active.Generation)
	require.Len(t, changes[0].Retained, 1)
	require.Equal(t, first.Generation, changes[0].Retained[0].Generation)
	require.Equal(t, next, f.m.Active().Generation)
	s = f.m.RotationStatus()
	require.Equal(t, PhaseIdle, s.Phase)
	require.Equal(t, activateAt, s.LastSuccess)
	require.Equal(t, fraction(f.m.Active(), 0.5), s.Next, "the next preparation is at half the new intermediate's lifetime")
}

// A successor that fails its check is never activated: past the
// activation threshold the old generation still signs, the status is
// stuck with the reason, and the retry (with backoff) activates a good
// successor once the fault is gone.
func TestManager_AFailedCheckBlocksActivation(t *testing.T) {
	var f *fixture
	var broken atomic.Bool
	f = newFixture(t, func(s Step, gen uint64) {
		if s == StepPrepared && broken.Load() {
			breakKey(t, f.parts, gen)
		}
	})
	first, err := f.m.Start(context.Background())
	require.NoError(t, err)
	broken.Store(true)
	f.run(t)
	f.at(t, fraction(first, 0.5))
	s := f.m.RotationStatus()
	require.True(t, s.Stuck)
	require.Equal(t, PhasePreparing, s.Phase)
	require.Contains(t, s.Problem, "does not load")
	f.at(t, fraction(first, 0.66).Add(time.Hour))
	st := states(t, f.st)
	require.Equal(t, store.StateActive, st[first.Generation], "the old generation still signs")
	for id, state := range st {
		if id != first.Generation {
			require.Equal(t, store.StatePrepared, state, "generation %d", id)
			require.True(t, generation(t, f.st, id).VerifiedAt.IsZero(), "generation %d was never verified", id)
		}
	}
	require.True(t, f.m.RotationStatus().Stuck)
	require.Empty(t, f.gotChanges())

	broken.Store(false)
	f.at(t, f.clk.Now().Add(11*time.Minute)) // past the longest backoff step
	st = states(t, f.st)
	require.NotEqual(t, store.StateActive, st[first.Generation])
	require.Equal(t, f.m.Active().Generation, f.gotChanges()[0].Active.Generation)
	require.True(t, generation(t, f.st, f.m.Active().Generation).VerifiedAt.After(time.Time{}))
	require.False(t, f.m.RotationStatus().Stuck)
	require.Empty(t, f.m.RotationStatus().Problem)
}

// The throwaway leaf catches a CA key that does not match its
// certificate.
func TestSelfTest_CatchesAKeyThatDoesNotMatch(t *testing.T) {
	f := newFixture(t, nil)
	mat, err := f.m.Start(context.Background())
	require.NoError(t, err)
	require.NoError(t, mat.SelfTest(f.clk.Now()))
	other, _, err := f.km.Create("other", f.cfg.Intermediate.KeyAlgorithm)
	require.NoError(t, err)
	bad := *mat
	bad.Signer = other
	require.ErrorContains(t, bad.SelfTest(f.clk.Now()), "does not verify")
}

// A retired generation stays in Retained until its last leaf has expired
// plus intermediate.gracePeriod; then subscribers get a ReasonRetired
// change without it.
func TestManager_RetainsTheRetiredGenerationForItsLeavesAndTheGracePeriod(t *testing.T) {
	f := newFixture(t, nil)
	first, err := f.m.Start(context.Background())
	require.NoError(t, err)
	activateAt := fraction(first, 0.66)
	lastLeaf := activateAt.Add(20 * 24 * time.Hour).Truncate(time.Second)
	require.NoError(t, f.st.PutIssuance(context.Background(), store.Issuance{
		Serial: "0a", Identity: "spiffe://cluster.local/ns/a/sa/b", NotBefore: t0, NotAfter: lastLeaf,
		Fingerprint: "00", Profile: "classical", Requester: "test", Generation: first.Generation, IssuedAt: t0,
	}))
	f.run(t)
	f.at(t, fraction(first, 0.5))
	f.at(t, activateAt)
	require.Len(t, f.m.Retained(), 1)
	grace := f.cfg.Intermediate.GracePeriod.Duration
	f.at(t, lastLeaf.Add(grace).Add(-time.Second))
	require.Len(t, f.m.Retained(), 1, "retained until the last leaf expired plus the grace period")
	require.Len(t, f.gotChanges(), 1)

	f.at(t, lastLeaf.Add(grace))
	require.Empty(t, f.m.Retained())
	changes := f.gotChanges()
	require.Len(t, changes, 2)
	require.Equal(t, rotation.ReasonRetired, changes[1].Reason)
	require.Empty(t, changes[1].Retained)
	require.Equal(t, first.Generation+1, changes[1].Active.Generation)
	states(t, f.st)
}

// RefreshRoots keeps the generation and its intermediate, and hands
// every root (the issuing one not first) to the subscribers.
func TestManager_RefreshRootsKeepsTheGeneration(t *testing.T) {
	f := newFixture(t, nil)
	src := &moreRoots{Source: f.src}
	f.m.src, f.m.loader.Root = src, src
	first, err := f.m.Start(context.Background())
	require.NoError(t, err)
	other := newRoot(t)
	src.first = other
	require.NoError(t, f.m.RefreshRoots(context.Background()))
	changes := f.gotChanges()
	require.Len(t, changes, 1)
	c := changes[0]
	require.Equal(t, rotation.ReasonRoots, c.Reason)
	require.Equal(t, first.Generation, c.Active.Generation)
	require.True(t, c.Active.Bundle.Cert.Equal(first.Bundle.Cert))
	require.Len(t, c.Active.Bundle.Roots, 2)
	require.True(t, c.Active.Bundle.Roots[0].Equal(other))
	require.True(t, c.Active.Bundle.Roots[1].Equal(first.Bundle.Roots[0]))
	require.NoError(t, c.Active.SelfTest(f.clk.Now()))
	require.Equal(t, map[uint64]store.GenerationState{first.Generation: store.StateActive}, states(t, f.st))
}

// A subscriber that fails is retried with backoff, with the same change,
// and only it: the activation is not undone, and the phase says so.
func TestManager_AFailingSubscriberIsRetried(t *testing.T) {
	f := newFixture(t, nil)
	var fails atomic.Int32
	fails.Store(2)
	var got []uint64
	f.m.Subscribe(func(_ context.Context, c rotation.Change) error {
		got = append(got, c.Active.Generation)
		if fails.Add(-1) >= 0 {
			return errors.New("apiserver unavailable")
		}
		return nil
	})
	first, err := f.m.Start(context.Background())
	require.NoError(t, err)
	f.run(t)
	f.at(t, fraction(first, 0.5))
	f.at(t, fraction(first, 0.66))
	next := first.Generation + 1
	require.Equal(t, map[uint64]store.GenerationState{first.Generation: store.StateRetired, next: store.StateActive}, states(t, f.st))
	s := f.m.RotationStatus()
	require.Equal(t, PhaseActivating, s.Phase)
	require.Equal(t, 3, s.PhaseCode)
	require.True(t, s.Stuck)
	require.Contains(t, s.Problem, "apiserver unavailable")
	require.Len(t, f.gotChanges(), 1, "the subscriber that applied the change is not called again")

	for range 2 {
		f.at(t, f.m.RotationStatus().Next)
	}
	require.Equal(t, []uint64{next, next, next}, got)
	s = f.m.RotationStatus()
	require.Equal(t, PhaseIdle, s.Phase)
	require.False(t, s.Stuck)
	require.Len(t, f.gotChanges(), 1)
}

// Start resumes from the journal: a verified prepared successor is kept in
// the next slot (never minted again), and activated at once when the
// active generation is already past the activation threshold.
func TestManager_StartResumesThePreparedSuccessor(t *testing.T) {
	f := newFixture(t, nil)
	first, err := f.m.Start(context.Background())
	require.NoError(t, err)
	// One evaluation at 50% (no Run loop: the restarted Managers below are
	// the only ones on the store).
	f.clk.SetTime(fraction(first, 0.5))
	f.m.mu.Lock()
	f.m.evaluate(context.Background())
	f.m.mu.Unlock()
	next := first.Generation + 1
	require.Equal(t, store.StatePrepared, states(t, f.st)[next])
	keysBefore := keyFiles(t, f.cfg)

	restart := func(at time.Time) *Manager {
		f.clk.SetTime(at)
		m := New(Options{Config: f.cfg, Keys: f.km, Store: f.st, Root: f.src, Clock: f.clk, Log: f.m.log})
		_, err := m.Start(context.Background())
		require.NoError(t, err)
		return m
	}
	m := restart(fraction(first, 0.6))
	require.Equal(t, first.Generation, m.Active().Generation)
	require.Equal(t, PhasePrepared, m.RotationStatus().Phase)
	require.Equal(t, map[uint64]store.GenerationState{first.Generation: store.StateActive, next: store.StatePrepared}, states(t, f.st))

	m = restart(fraction(first, 0.7))
	require.Equal(t, next, m.Active().Generation)
	require.Equal(t, map[uint64]store.GenerationState{first.Generation: store.StateRetired, next: store.StateActive}, states(t, f.st))
	require.Equal(t, keysBefore, keyFiles(t, f.cfg), "the prepared successor is activated, nothing is minted")
	require.Len(t, m.Retained(), 1)
}

// RotateNow mints, verifies and activates a successor at once, whatever
// the thresholds, discarding nothing but the slot: the subscribers get the
// activation with the previous generation retained.
func TestManager_RotateNow(t *testing.T) {
	f := newFixture(t, nil)
	first, err := f.m.Start(context.Background())
	require.NoError(t, err)
	f.run(t)
	next, err := f.m.RotateNow(context.Background(), "test")
	require.NoError(t, err)
	require.Equal(t, first.Generation+1, next.Generation)
	require.Equal(t, map[uint64]store.GenerationState{first.Generation: store.StateRetired, next.Generation: store.StateActive}, states(t, f.st))
	require.False(t, generation(t, f.st, next.Generation).VerifiedAt.IsZero(), "verified before it was activated")
	changes := f.gotChanges()
	require.Len(t, changes, 1)
	require.Equal(t, rotation.ReasonActivated, changes[0].Reason)
	require.Same(t, next, changes[0].Active)
	require.Len(t, changes[0].Retained, 1)
	s := f.m.RotationStatus()
	require.Equal(t, PhaseIdle, s.Phase)
	require.Equal(t, fraction(next, 0.5), s.Next)
	f.settled(t)
}

// A retired generation of another profile (intermediate.profile changed
// since) is still retained across a restart: its leaves are in use, so
// its CRL stays served. It is loaded under its own profile; only the
// signing generation must match the configuration.
func TestManager_RetainsARetiredGenerationOfAnotherProfileAcrossARestart(t *testing.T) {
	f := newFixture(t, nil)
	first, err := f.m.Start(context.Background())
	require.NoError(t, err)
	require.NoError(t, f.st.PutIssuance(context.Background(), store.Issuance{
		Serial: "0a", Identity: "spiffe://cluster.local/ns/a/sa/b", NotBefore: t0, NotAfter: t0.Add(30 * 24 * time.Hour),
		Fingerprint: "00", Profile: string(first.Profile), Requester: "test", Generation: first.Generation, IssuedAt: t0,
	}))
	other := profile.Classical
	if first.Profile == profile.Classical {
		other = profile.Catalyst
	}
	f.cfg.Intermediate.Profile = other
	if other == profile.Classical {
		f.cfg.Intermediate.PQAlgorithm = ""
	}
	restart := func() *Manager {
		m := New(Options{Config: f.cfg, Keys: f.km, Store: f.st, Root: f.src, Clock: f.clk, Log: f.m.log})
		_, err := m.Start(context.Background())
		require.NoError(t, err)
		return m
	}
	f.clk.Step(time.Hour)
	m := restart()
	require.NotEqual(t, first.Generation, m.Active().Generation, "the profile changed: a new generation signs")
	require.Equal(t, other, m.Active().Profile)
	f.clk.Step(time.Hour)
	m = restart()
	require.Len(t, m.Retained(), 1, "generation %d's leaf expires in 30 days", first.Generation)
	require.Equal(t, first.Generation, m.Retained()[0].Generation)
	require.Equal(t, first.Profile, m.Retained()[0].Profile)
}

// A lineage removed from the configuration may have its active
// intermediate revoked (it signs nothing); configured again, it must not
// sign under the revoked one: Start rotates to a new intermediate.
func TestManager_StartRotatesAwayFromARevokedActiveIntermediate(t *testing.T) {
	f := newFixture(t, nil)
	first, err := f.m.Start(context.Background())
	require.NoError(t, err)
	_, err = f.st.Revoke(context.Background(), []store.Revocation{{
		Serial: hex.EncodeToString(first.Bundle.Cert.SerialNumber.Bytes()), Kind: store.KindIntermediate,
		Generation: first.Generation, Known: true, NotAfter: first.Bundle.Cert.NotAfter.UTC(),
		Reason: store.ReasonCACompromise, RevokedAt: f.clk.Now().UTC(),
	}})
	require.NoError(t, err)

	m := New(Options{Config: f.cfg, Keys: f.km, Store: f.st, Root: f.src, Clock: f.clk, Log: f.m.log})
	got, err := m.Start(context.Background())
	require.NoError(t, err)
	require.Equal(t, first.Generation+1, got.Generation, "a new intermediate")
	require.NotEqual(t, first.Bundle.Cert.SerialNumber, got.Bundle.Cert.SerialNumber)
	require.Equal(t, store.StateRetired, states(t, f.st)[first.Generation])
}

// A running replica whose active intermediate another replica revoked
// (one whose configuration no longer runs this lineage: crl.Revoker
// refuses the active generation of the lineages its own replica runs)
// reports it as stuck, with what to do, at its next evaluation. It does
// not mint a successor by itself: a lineage being cut off (a compromised
// plug-in cluster) must not get a fresh CA key. A leaf revocation under
// the intermediate's serial is another certificate and changes nothing;
// an operator's rotation ends the report.
func TestManager_ARunningReplicaReportsItsRevokedActiveIntermediate(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	first, err := f.m.Start(ctx)
	require.NoError(t, err)
	serial := hex.EncodeToString(first.Bundle.Cert.SerialNumber.Bytes())
	evaluate := func() rotation.Status {
		f.m.mu.Lock()
		defer f.m.mu.Unlock()
		f.m.evaluate(ctx)
		f.m.updateStatus()
		return f.m.RotationStatus()
	}
	require.False(t, evaluate().Stuck)

	_, err = f.st.Revoke(ctx, []store.Revocation{{
		Serial: serial, Kind: store.KindIntermediate,
		Generation: first.Generation, Known: true, NotAfter: first.Bundle.Cert.NotAfter.UTC(),
		Reason: store.ReasonCACompromise, RevokedAt: f.clk.Now().UTC(),
	}})
	require.NoError(t, err)
	s := evaluate()
	require.True(t, s.Stuck)
	require.Equal(t, fmt.Sprintf("the active intermediate (generation %d) is recorded as revoked, most likely by a replica whose configuration no longer runs this lineage, and this replica still signs under it: "+
		"run the same configuration on every replica, or, if this lineage is to keep running, rotate it (meshca rotate intermediate; for root.file.cacertsDir, install a new intermediate and restart)", first.Generation), s.Problem)
	require.Equal(t, first.Generation, f.m.Active().Generation, "no successor minted by itself")
	require.Equal(t, map[uint64]store.GenerationState{first.Generation: store.StateActive}, states(t, f.st))
	require.Empty(t, f.gotChanges())

	got, err := f.m.RotateNow(ctx, "the operator rotates")
	require.NoError(t, err)
	require.Equal(t, first.Generation+1, got.Generation)
	require.False(t, f.m.RotationStatus().Stuck, "the report is of the generation that was active")
	require.False(t, evaluate().Stuck)

	// A leaf of another issuer revoked under the active intermediate's
	// serial (revocations are kept by serial) is another certificate.
	g := newFixture(t, nil)
	active, err := g.m.Start(ctx)
	require.NoError(t, err)
	_, err = g.st.Revoke(ctx, []store.Revocation{{Serial: hex.EncodeToString(active.Bundle.Cert.SerialNumber.Bytes()), Kind: store.KindLeaf,
		Generation: active.Generation, Reason: store.ReasonKeyCompromise, RevokedAt: g.clk.Now().UTC()}})
	require.NoError(t, err)
	g.m.mu.Lock()
	g.m.evaluate(ctx)
	g.m.updateStatus()
	g.m.mu.Unlock()
	require.False(t, g.m.RotationStatus().Stuck)
}

// unavailableRoot is a root source that does not answer (Vault sealed).
type unavailableRoot struct{ root.Source }

func (unavailableRoot) Roots(context.Context) ([]*x509.Certificate, error) {
	return nil, fmt.Errorf("sealed: %w", root.ErrUnavailable)
}

// While the root source does not answer, meshca falls back on the stored
// active intermediate; a revoked one is not a fallback either (RFC 5280
// section 6.3: every leaf under it fails validation).
func TestLoader_StoredFallbackRefusesARevokedActiveIntermediate(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	first, err := f.m.Start(ctx)
	require.NoError(t, err)
	l := &authority.Loader{Config: f.cfg, Keys: f.km, Store: f.st, Root: unavailableRoot{f.src}, Clock: f.clk}
	_, err = l.ActiveMaterial(ctx, 0)
	require.NoError(t, err, "the stored intermediate while the source is down")

	_, err = f.st.Revoke(ctx, []store.Revocation{{
		Serial: hex.EncodeToString(first.Bundle.Cert.SerialNumber.Bytes()), Kind: store.KindIntermediate,
		Generation: first.Generation, Known: true, NotAfter: first.Bundle.Cert.NotAfter.UTC(),
		Reason: store.ReasonCACompromise, RevokedAt: f.clk.Now().UTC(),
	}})
	require.NoError(t, err)
	_, err = l.ActiveMaterial(ctx, 0)
	var unusable *authority.UnusableError
	require.ErrorAs(t, err, &unusable)
}

// A leaf revoked under the serial of the active intermediate is another
// certificate (serials are unique per issuer, RFC 5280 section 4.1.2.2):
// the intermediate stays in use.
func TestManager_ALeafRevocationUnderTheIntermediatesSerialIsNotTheIntermediates(t *testing.T) {
	f := newFixture(t, nil)
	first, err := f.m.Start(context.Background())
	require.NoError(t, err)
	_, err = f.st.Revoke(context.Background(), []store.Revocation{{
		Serial: hex.EncodeToString(first.Bundle.Cert.SerialNumber.Bytes()), Kind: store.KindLeaf,
		Generation: first.Generation, Reason: store.ReasonKeyCompromise, RevokedAt: f.clk.Now().UTC(),
	}})
	require.NoError(t, err)
	m := New(Options{Config: f.cfg, Keys: f.km, Store: f.st, Root: f.src, Clock: f.clk, Log: f.m.log})
	got, err := m.Start(context.Background())
	require.NoError(t, err)
	require.Equal(t, first.Generation, got.Generation)
}

// revokeGeneration records generation id's intermediate as revoked, as
// `meshca revoke --generation id` does.
func revokeGeneration(t *testing.T, f *fixture, id uint64) {
	t.Helper()
	g := generation(t, f.st, id)
	c, err := x509.ParseCertificate(g.CertDER)
	require.NoError(t, err)
	_, err = f.st.Revoke(context.Background(), []store.Revocation{{
		Serial: hex.EncodeToString(c.SerialNumber.Bytes()), Kind: store.KindIntermediate,
		Generation: id, Known: true, NotAfter: c.NotAfter.UTC(),
		Reason: store.ReasonKeyCompromise, RevokedAt: f.clk.Now().UTC(),
	}})
	require.NoError(t, err)
}

// An operator may revoke the prepared successor (its key leaked before it
// signed anything); crl.Revoker accepts that, as the generation signs
// nothing yet. It must then never sign: at the activation threshold a
// fresh successor is minted and activated in its place, whether the
// revoked one waits in the running replica's next slot or in the journal
// of a replica that restarts (RFC 5280 section 6.3: every leaf under a
// revoked CA fails validation).
func TestManager_ARevokedPreparedSuccessorIsNeverActivated(t *testing.T) {
	for _, restart := range []bool{false, true} {
		t.Run(fmt.Sprintf("restart=%v", restart), func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, nil)
			first, err := f.m.Start(ctx)
			require.NoError(t, err)
			prepared := first.Generation + 1
			if !restart {
				f.run(t)
				f.at(t, fraction(first, 0.5))
			} else {
				f.clk.SetTime(fraction(first, 0.5))
				f.m.mu.Lock()
				require.NoError(t, f.m.prepareLocked(ctx, false))
				f.m.mu.Unlock()
			}
			require.Equal(t, store.StatePrepared, states(t, f.st)[prepared])
			revokeGeneration(t, f, prepared)
			if restart {
				// Another process takes over the journal: its Start finds
				// the prepared (revoked) successor there.
				f.m = New(Options{Config: f.cfg, Keys: f.km, Store: f.st, Root: f.src, Clock: f.clk, Log: f.m.log})
				f.m.Subscribe(func(_ context.Context, c rotation.Change) error {
					f.mu.Lock()
					defer f.mu.Unlock()
					f.changes = append(f.changes, c)
					return nil
				})
				_, err := f.m.Start(ctx)
				require.NoError(t, err)
				f.run(t)
			}
			f.at(t, fraction(first, 0.66))

			st := states(t, f.st)
			require.Equal(t, store.StatePrepared, st[prepared], "the revoked successor never signs")
			require.Equal(t, store.StateRetired, st[first.Generation])
			active := f.m.Active().Generation
			require.Greater(t, active, prepared, "a fresh successor signs")
			require.Equal(t, store.StateActive, st[active])
			changes := f.gotChanges()
			require.Len(t, changes, 1)
			require.Equal(t, active, changes[0].Active.Generation)
			require.False(t, f.m.RotationStatus().Stuck)
		})
	}
}

// A lineage being cut off has its active and its prepared generation
// revoked (by a replica whose configuration no longer runs it): at the
// activation threshold this replica neither activates the revoked
// successor nor mints a fresh one, which would hand the cut-off lineage a
// new CA key; it reports the revoked active intermediate until the
// operator rotates.
func TestManager_ACutOffLineageGetsNoFreshSuccessor(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	first, err := f.m.Start(ctx)
	require.NoError(t, err)
	prepared := first.Generation + 1
	f.run(t)
	f.at(t, fraction(first, 0.5))
	require.Equal(t, store.StatePrepared, states(t, f.st)[prepared])
	revokeGeneration(t, f, prepared)
	revokeGeneration(t, f, first.Generation)
	f.at(t, fraction(first, 0.66))

	require.Equal(t, map[uint64]store.GenerationState{first.Generation: store.StateActive, prepared: store.StatePrepared}, states(t, f.st),
		"nothing activated, nothing minted")
	require.Empty(t, f.gotChanges())
	s := f.m.RotationStatus()
	require.True(t, s.Stuck)
	require.Contains(t, s.Problem, "is recorded as revoked")
}

// notLeading is a Leader that does not hold the Lease.
type notLeading struct{}

func (notLeading) Leading() (store.Fence, bool) { return store.Fence{}, false }

// Past a threshold nothing is acted on by a follower, nor by a replica
// whose active intermediate is revoked: neither may wake at once again and
// again (each evaluation reads the store), as a threshold in the past would
// have it.
func TestManager_NoThresholdInThePastWakesItAtOnce(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	first, err := f.m.Start(ctx)
	require.NoError(t, err)
	revokeGeneration(t, f, first.Generation)
	f.clk.SetTime(fraction(first, 0.7))
	f.m.mu.Lock()
	f.m.evaluate(ctx)
	f.m.updateStatus()
	wait := f.m.waitLocked()
	f.m.mu.Unlock()
	require.True(t, f.m.RotationStatus().Stuck, "the revoked active intermediate is reported")
	require.Equal(t, maxWait, wait, "a revoked lineage waits for nothing but the operator")

	g := newFixture(t, nil)
	second, err := g.m.Start(ctx)
	require.NoError(t, err)
	g.m.leader, g.m.followEvery = notLeading{}, 10*time.Second
	g.clk.SetTime(fraction(second, 0.7))
	g.m.mu.Lock()
	wait = g.m.waitLocked()
	g.m.mu.Unlock()
	require.Equal(t, 10*time.Second, wait, "a follower reads the store every interval")
}

// Package intermediate rotates meshca's signing intermediate with two
// slots, as SPIRE's CA manager does: the active generation signs; at
// intermediate.prepareThreshold of its lifetime the Manager has the root
// source mint a successor, records it as PREPARED, verifies it by signing
// and verifying a throwaway leaf, and at intermediate.activateThreshold
// makes it ACTIVE (the store retires the previous one in the same
// transaction). Every step is journaled in the store, so a restart (even
// after kill -9) resumes where it stopped: it reuses a prepared successor
// instead of minting another, and there is never more than one active
// generation, nor none once one was activated. A retired generation stays
// published (rotation.Change.Retained) until its last leaf has expired
// plus intermediate.gracePeriod.
package intermediate

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/clock"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/rotation"
)

// Step is a journal step, reported to Options.OnStep once it is durable.
type Step string

// Journal steps.
const (
	// StepPrepared: a successor was minted and recorded as prepared.
	StepPrepared Step = "prepared"
	// StepVerified: it signed a throwaway leaf that verified, and that is
	// recorded.
	StepVerified Step = "verified"
	// StepActivated: it is the active generation (the previous one is
	// retired); the subscribers have not run yet.
	StepActivated Step = "activated"
)

// Store is what the Manager needs of the store: the generations (its
// journal) and the issuance index (the last leaf of a retired generation).
type Store interface {
	store.Generations
	store.IssuanceIndex
}

// Options configures a Manager.
type Options struct {
	Config *config.Config
	Keys   *keys.Manager
	Store  Store
	// Root is the root source that mints the successors; a wrapper (the
	// root rotation's composite source) may stand in for the configured
	// one.
	Root root.Source
	// Loader reads generations; nil builds one from the fields above.
	Loader *authority.Loader
	// Signer is the signer lineage the Manager rotates (store.Generation.
	// Signer; its Loader's Signer when Loader is set): a signer with its own
	// intermediate has its own Manager and journal on the shared store.
	// Empty: the default signer.
	Signer string
	// Clock drives the thresholds, the retries and the grace periods
	// (default the real clock).
	Clock clock.WithTicker
	Log   *slog.Logger
	// OnStep, if set, is called after each journal step is durable and
	// before anything else happens (tests: kill -9 at each step).
	OnStep func(step Step, generation uint64)
	// Leader, for several replicas, tells whether this replica holds the
	// Lease of the singleton jobs: only then does the Manager mint and
	// activate (under the Lease's fence); otherwise it follows the
	// store's active generation. Nil: one replica, always leading.
	Leader Leader
	// FollowInterval is how often a follower reads the store's active
	// generation, and the longest a Manager with a Leader waits before it
	// looks at the Lease again (default 5 s).
	FollowInterval time.Duration
}

// Manager rotates the signing intermediate. Its methods are safe for
// concurrent use; rotation steps are serialised.
type Manager struct {
	cfg    *config.Config
	keys   *keys.Manager
	st     Store
	src    root.Source
	loader *authority.Loader
	clk    clock.WithTicker
	log    *slog.Logger
	onStep func(Step, uint64)
	leader Leader
	// followEvery is Options.FollowInterval.
	followEvery time.Duration
	// led: the last evaluation ran as the lease holder (guarded by mu).
	led bool

	subsMu sync.Mutex
	subs   []rotation.Subscriber

	// mu serialises the rotation steps and guards the fields below.
	mu     sync.Mutex
	active *authority.Material
	next   *authority.Material // the verified successor, or nil
	// abandoned are the abandoned generations (store.States) already
	// reported by warnAbandoned.
	abandoned map[uint64]bool
	retained  []retainedGen  // oldest first
	pending   *pendingChange // a change some subscribers have not applied yet
	failures  *wait.Backoff  // non-nil while the last step failed
	retryAt   time.Time      // when a failed step is retried
	problem   string         // why the last step failed
	revoked   string         // the active intermediate is revoked: what to do (checkRevoked)
	revokedOf uint64         // the generation revoked names
	lastOK    time.Time      // when the last step succeeded
	since     time.Time      // when the current phase began
	phase     string

	// snapshots for readers that must not wait for a rotation step (the
	// subscribers run while one holds mu)
	activeSnap   atomic.Pointer[authority.Material]
	retainedSnap atomic.Pointer[[]*authority.Material]

	status   atomic.Pointer[rotation.Status]
	wake     chan struct{}
	lastEval atomic.Int64 // clock time (UnixNano) of the last evaluation (tests)
}

// New returns a Manager; Start loads (or makes) the active generation.
func New(o Options) *Manager {
	m := &Manager{
		cfg: o.Config, keys: o.Keys, st: o.Store, src: o.Root, loader: o.Loader,
		clk: o.Clock, log: o.Log, onStep: o.OnStep, wake: make(chan struct{}, 1),
		leader: o.Leader, followEvery: o.FollowInterval,
	}
	if m.followEvery <= 0 {
		m.followEvery = defaultFollowInterval
	}
	if m.clk == nil {
		m.clk = clock.RealClock{}
	}
	if m.log == nil {
		m.log = slog.Default()
	}
	if m.loader == nil {
		m.loader = &authority.Loader{Config: o.Config, Keys: o.Keys, Store: o.Store, Log: m.log, Clock: m.clk, Root: o.Root, Signer: o.Signer}
	}
	m.status.Store(&rotation.Status{CA: rotation.IntermediateCA(m.loader.Signer), Phase: PhaseIdle})
	return m
}

func (m *Manager) step(s Step, gen uint64) {
	if m.onStep != nil {
		m.onStep(s, gen)
	}
}

// Subscribe adds fn to the subscribers of every change (activation,
// roots, end of a grace period), called in the order subscribed. Call it
// before Run. A subscriber runs while the Manager holds its rotation
// lock: it may call Active, Retained and RotationStatus, never RotateNow
// or RefreshRoots.
func (m *Manager) Subscribe(fn rotation.Subscriber) {
	m.subsMu.Lock()
	defer m.subsMu.Unlock()
	m.subs = append(m.subs, fn)
}

// Active is the material meshca signs with (nil before Start). It does
// not wait for a rotation step in progress, so subscribers may call it.
func (m *Manager) Active() *authority.Material { return m.activeSnap.Load() }

// Retained is the material of the retired generations still published
// (as of the last change).
func (m *Manager) Retained() []*authority.Material {
	if r := m.retainedSnap.Load(); r != nil {
		return *r
	}
	return nil
}

// snapshot publishes active and retained for Active and Retained; m.mu is
// held.
func (m *Manager) snapshot() {
	m.activeSnap.Store(m.active)
	r := m.retainedMaterial()
	m.retainedSnap.Store(&r)
}

// Start resumes from the journal and returns the material to sign with:
//   - the active generation is good: it stays, and a verified prepared
//     successor is kept in the next slot (never minted again); past the
//     activation threshold, that successor is activated now;
//   - there is no active generation, it expired, it no longer chains to
//     the root or it does not match the configuration (profile, algorithm):
//     a successor (a prepared one from the journal, else a new one) is
//     prepared, verified and activated now;
//   - a pre-issued intermediate (root.file.cacertsDir) is recorded and
//     activated the first time it is seen, and never rotated.
//
// With a Leader, a replica that does not hold the Lease takes the store's
// active generation as it is and never mints; while the store has none it
// waits for the lease holder to make one (startFollower).
//
// Start calls no subscriber: the caller builds its components from the
// material returned.
func (m *Manager) Start(ctx context.Context) (*authority.Material, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	defer m.updateStatus()
	if p, ok := m.src.(root.PreIssuedSource); ok {
		return m.startPreIssued(ctx, p)
	}
	if mat, led, err := m.startFollower(ctx); err != nil || !led {
		return mat, err
	}
	mat, err := m.loader.ActiveMaterial(ctx, 0)
	var unusable *authority.UnusableError
	switch {
	case errors.As(err, &unusable):
		m.log.Info("no usable active intermediate; rotating now", unusable.Attrs()...)
		if _, err := m.rotateLocked(ctx, "start: "+unusable.Msg, false); err != nil {
			return nil, err
		}
		return m.active, m.loadRetained(ctx)
	case err != nil:
		return nil, err
	}
	m.active = mat
	if err := m.loadRetained(ctx); err != nil {
		return nil, err
	}
	roots, err := m.src.Roots(ctx)
	if errors.Is(err, root.ErrUnavailable) {
		// Signing with the stored intermediate until the source answers;
		// Run resumes the rotation then.
		return m.active, nil
	}
	if err != nil {
		return nil, err
	}
	if m.next, err = m.preparedSuccessor(ctx, mat.Generation, roots); err != nil {
		return nil, err
	}
	if !m.clk.Now().Before(m.activateAt()) {
		m.log.Info("the active intermediate is past its activation threshold; rotating now", "generation", mat.Generation, "activate_at", m.activateAt())
		if _, err := m.rotateLocked(ctx, "start: past the activation threshold", false); err != nil {
			return nil, err
		}
	}
	return m.active, nil
}

// startPreIssued records a pre-issued intermediate as the active
// generation the first time it is seen; it cannot be rotated. With a
// Leader only the lease holder records it (and, for a catalyst profile,
// creates its ML-DSA key), through the fenced compare-and-set of
// switchActive; a follower waits, polling every FollowInterval, until the
// store holds it as active, as startFollower does for a minted one.
func (m *Manager) startPreIssued(ctx context.Context, p root.PreIssuedSource) (*authority.Material, error) {
	logged := false
	for {
		_, lead := m.leading()
		mat, rec, err := m.loader.PreIssued(ctx, p, lead)
		var unusable *authority.UnusableError
		switch {
		case err == nil && rec == nil:
			m.active = mat
			return mat, m.loadRetained(ctx)
		case err == nil && lead:
			done, err := m.recordPreIssued(ctx, mat, rec)
			if err != nil {
				return nil, err
			}
			if done {
				m.active = mat
				return mat, m.loadRetained(ctx)
			}
		case err != nil && (lead || !errors.As(err, &unusable)):
			return nil, err
		}
		if !logged {
			m.log.Info("the pre-issued intermediate is not recorded yet; waiting for the lease holder to record it")
			logged = true
		}
		t := m.clk.NewTimer(m.followEvery)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C():
		}
	}
}

// recordPreIssued adds rec (or, when rec has an ID, takes the record an
// earlier start added and did not activate), verifies mat with a
// throwaway leaf and activates it. done is false when another replica
// activated a generation first or this one lost the Lease meanwhile
// (store.ErrConflict, store.ErrFenced, ErrNotLeader): the caller reads the
// store again.
func (m *Manager) recordPreIssued(ctx context.Context, mat *authority.Material, rec *store.Generation) (done bool, err error) {
	g := *rec
	if g.ID == 0 {
		if g, err = m.st.AddGeneration(ctx, *rec); err != nil {
			return false, fmt.Errorf("record the pre-issued CA generation: %w", err)
		}
	} else {
		m.log.Info("activating the pre-issued intermediate's record that an earlier start added", "generation", g.ID)
	}
	m.step(StepPrepared, g.ID)
	mat.Generation = g.ID
	if err := mat.SelfTest(m.clk.Now()); err != nil {
		return false, fmt.Errorf("the pre-issued intermediate in root.file.cacertsDir failed its throwaway-leaf check: %w", err)
	}
	if err := m.st.MarkGenerationVerified(ctx, g.ID, m.clk.Now().UTC()); err != nil {
		return false, err
	}
	m.step(StepVerified, g.ID)
	err = m.switchActive(ctx, mat, nil, m.clk.Now().UTC())
	if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrFenced) || errors.Is(err, ErrNotLeader) {
		m.log.Info("another replica recorded an intermediate first, or the lease was lost; reading the store again", "generation", g.ID, "error", err)
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("activate CA generation %d: %w", g.ID, err)
	}
	m.step(StepActivated, g.ID)
	m.log.Info("recorded the pre-issued intermediate as the active CA generation", "generation", g.ID, "subject", mat.Bundle.Cert.Subject.String())
	return true, nil
}

// RotateNow prepares a successor (mints it through the root source, or
// takes the verified prepared one), verifies it with a throwaway leaf and
// activates it now, journaling each step, then calls every subscriber
// with a ReasonActivated change. reason is logged.
func (m *Manager) RotateNow(ctx context.Context, reason string) (*authority.Material, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	defer m.updateStatus()
	if m.active == nil {
		return nil, errors.New("the intermediate rotation manager has not started")
	}
	if _, lead := m.leading(); !lead {
		return nil, ErrNotLeader
	}
	c, err := m.rotateLocked(ctx, reason, true)
	if err != nil {
		m.fail(err)
		m.kick()
		return nil, err
	}
	m.notify(ctx, c)
	m.kick()
	return m.active, nil
}

// rotateLocked prepares (unless a verified successor is in the next slot,
// or the journal holds one) and activates now. It returns the change for
// the subscribers. fresh insists on a successor minted under the source's
// current roots (RotateNow: a root rotation switches to the new root).
func (m *Manager) rotateLocked(ctx context.Context, reason string, fresh bool) (rotation.Change, error) {
	m.log.Info("rotating the intermediate", "reason", reason)
	if fresh {
		m.next = nil
	}
	if m.next == nil {
		if err := m.prepareLocked(ctx, fresh); err != nil {
			return rotation.Change{}, err
		}
	}
	return m.activateLocked(ctx)
}

// prepareLocked fills the next slot: with the prepared successor of the
// journal unless fresh, else with a newly minted one, verified.
func (m *Manager) prepareLocked(ctx context.Context, fresh bool) error {
	roots, err := m.src.Roots(ctx)
	if err != nil {
		return fmt.Errorf("prepare the next intermediate: %w", err)
	}
	var after uint64
	if m.active != nil {
		after = m.active.Generation
	}
	if !fresh {
		if m.next, err = m.preparedSuccessor(ctx, after, roots); err != nil || m.next != nil {
			return err
		}
	}
	g, err := m.mint(ctx)
	if err != nil {
		return fmt.Errorf("prepare the next intermediate: %w", err)
	}
	next, err := m.verify(ctx, g, roots)
	if err != nil {
		return err
	}
	m.next = next
	return nil
}

// activateLocked makes the next slot the active generation (the store
// retires the previous one in the same transaction) and returns the change.
func (m *Manager) activateLocked(ctx context.Context) (rotation.Change, error) {
	// The next slot may have been revoked since it was prepared: a fresh
	// successor takes its place (a revocation after this check is
	// reported by checkRevoked at the next evaluation).
	if err := m.checkUnrevoked(ctx, m.next); err != nil {
		if !errors.Is(err, errRevokedSuccessor) {
			return rotation.Change{}, fmt.Errorf("activate CA generation %d: %w", m.next.Generation, err)
		}
		m.log.Warn("the prepared intermediate was revoked before its activation; preparing another in its place", "generation", m.next.Generation)
		m.next = nil
		if err := m.prepareLocked(ctx, false); err != nil {
			return rotation.Change{}, err
		}
	}
	next, prev := m.next, m.active
	now := m.clk.Now().UTC()
	if err := m.switchActive(ctx, next, prev, now); err != nil {
		err = fmt.Errorf("activate CA generation %d: %w", next.Generation, err)
		switch {
		case errors.Is(err, store.ErrFenced):
			m.log.Error("the store refused this replica's write as coming from an older Lease holder; adopting the store's active intermediate. "+
				"If no other replica holds the Lease, it was deleted or renamed and its spec.leaseTransitions (the fence token) started again from 0: "+
				"set it above the store's token named in the error (kubectl patch lease <name> --type merge -p '{\"spec\":{\"leaseTransitions\":N}}'); the next term's writes pass",
				"generation", next.Generation, "error", err)
			return rotation.Change{}, m.lostRace(ctx, err)
		case errors.Is(err, store.ErrConflict):
			m.log.Warn("another replica changed the active intermediate first; adopting the store's", "generation", next.Generation, "error", err)
			return rotation.Change{}, m.lostRace(ctx, err)
		}
		return rotation.Change{}, err
	}
	m.step(StepActivated, next.Generation)
	m.active, m.next = next, nil
	if prev != nil {
		m.retire(ctx, prev, now)
	}
	m.lastSuccess(now)
	m.log.Info("activated intermediate", "generation", next.Generation, "previous", generationOf(prev),
		"not_after", next.Bundle.Cert.NotAfter, "subject", next.Bundle.Cert.Subject.String())
	m.warnAbandonedNow(ctx)
	return rotation.Change{Active: next, Retained: m.retainedMaterial(), Reason: rotation.ReasonActivated}, nil
}

func generationOf(m *authority.Material) uint64 {
	if m == nil {
		return 0
	}
	return m.Generation
}

// RefreshRoots re-reads the root source's roots and rebuilds the active
// material (and the verified successor, if any) under them: the same
// intermediate and generation, with every root in force. Subscribers get
// a ReasonRoots change. The active intermediate must chain to one of the
// new roots.
func (m *Manager) RefreshRoots(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	defer m.updateStatus()
	if m.active == nil {
		return errors.New("the intermediate rotation manager has not started")
	}
	roots, err := m.src.Roots(ctx)
	if err != nil {
		return fmt.Errorf("refresh roots: %w", err)
	}
	mat, err := m.rebuild(ctx, m.active.Generation, roots)
	if err != nil {
		return fmt.Errorf("refresh roots: the active CA generation %d under the new roots: %w", m.active.Generation, err)
	}
	if m.next != nil {
		if m.next, err = m.rebuild(ctx, m.next.Generation, roots); err != nil {
			m.log.Warn("the prepared successor does not chain to the new roots; a new one is prepared", "error", err)
			m.next = nil
		}
	}
	m.active = mat
	m.log.Info("refreshed the roots of the active intermediate", "generation", mat.Generation, "roots", len(roots))
	m.notify(ctx, rotation.Change{Active: mat, Retained: m.retainedMaterial(), Reason: rotation.ReasonRoots})
	return nil
}

// rebuild loads generation id from the journal under roots.
func (m *Manager) rebuild(ctx context.Context, id uint64, roots []*x509.Certificate) (*authority.Material, error) {
	gens, err := m.st.ListGenerations(ctx)
	if err != nil {
		return nil, err
	}
	for _, g := range gens {
		if g.ID == id {
			return m.loader.GenerationMaterial(g, roots)
		}
	}
	return nil, fmt.Errorf("generation %d: %w", id, store.ErrNotFound)
}

// pendingChange is a change and the subscribers (by index) that failed
// to apply it.
type pendingChange struct {
	change rotation.Change
	subs   []int
}

// notify calls every subscriber with c, in order. A failing subscriber is
// logged and retried by Run with backoff, with the newest change; the
// change is never undone. A new change supersedes a pending one for every
// subscriber.
func (m *Manager) notify(ctx context.Context, c rotation.Change) {
	m.subsMu.Lock()
	n := len(m.subs)
	m.subsMu.Unlock()
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	m.deliver(ctx, c, all)
}

func (m *Manager) deliver(ctx context.Context, c rotation.Change, which []int) {
	m.snapshot()
	m.subsMu.Lock()
	subs := append([]rotation.Subscriber(nil), m.subs...)
	m.subsMu.Unlock()
	var failed []int
	var errs error
	for _, i := range which {
		if err := subs[i](ctx, c); err != nil {
			m.log.Error("a rotation subscriber failed; it is retried", "subscriber", i, "reason", c.Reason, "generation", c.Active.Generation, "error", err)
			failed = append(failed, i)
			errs = errors.Join(errs, err)
		}
	}
	if len(failed) > 0 {
		m.pending = &pendingChange{change: c, subs: failed}
		m.fail(fmt.Errorf("applying the %s change of generation %d: %w", c.Reason, c.Active.Generation, errs))
		return
	}
	m.pending = nil
}

// kick wakes Run to re-plan.
func (m *Manager) kick() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// retryBackoff is the retry schedule of a failed step.
func retryBackoff() wait.Backoff {
	return wait.Backoff{Duration: 10 * time.Second, Factor: 2, Jitter: 0.1, Steps: 1 << 30, Cap: 10 * time.Minute}
}

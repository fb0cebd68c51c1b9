package rootrotation

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/utils/clock"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/caerr"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/rotation"
	"github.com/meshca/meshca/rotation/alert"
	"github.com/meshca/meshca/rotation/intermediate"
)

// Intermediates is what the controller needs of the intermediate manager
// (rotation/intermediate.Manager).
type Intermediates interface {
	// RotateNow mints an intermediate under the root source's current
	// minting root, verifies and activates it.
	RotateNow(ctx context.Context, reason string) (*authority.Material, error)
	// RefreshRoots rebuilds the active material with the root source's
	// current Roots and moves every consumer to it.
	RefreshRoots(ctx context.Context) error
}

// Store is what the controller reads and writes.
type Store interface {
	store.RootRotations
	ListIssuances(ctx context.Context, fn func(store.Issuance) bool) error
	store.IssuanceIndex
	ListGenerations(ctx context.Context) ([]store.Generation, error)
}

// Alerter raises and clears alerts (rotation/alert.Engine).
type Alerter interface {
	Raise(ctx context.Context, a alert.Alert) error
	Clear(ctx context.Context, key alert.Key) error
}

// NewSourceFunc builds the root source of a root section (serve:
// authority.NewRootSource on the configuration with that section).
type NewSourceFunc func(ctx context.Context, rc config.RootConfig) (root.Source, error)

// Defaults of the controller.
const (
	DefaultInterval = 30 * time.Second
	// DefaultWorkloadsMinWait leaves istiod and the namespaces' ConfigMaps
	// time to take the new bundle before the count may end the wait.
	DefaultWorkloadsMinWait = 10 * time.Minute
	// stuckAfterFailures consecutive failures of a phase's action make the
	// rotation stuck.
	stuckAfterFailures = 3
)

// Options configure a Controller.
type Options struct {
	Store         Store
	Intermediates Intermediates
	// DefaultUncounted says that the default lineage's leaves are signed
	// outside meshca (trustBundle.publishCACerts: Istio's plug-in CA,
	// istiod signs the workloads with the published intermediate), so
	// that meshca's issuance records cannot end a waiting phase
	// (UncountedLeaves).
	DefaultUncounted bool
	// Leader and FollowInterval are the default intermediate Manager's
	// (intermediate.Options): with several replicas only the holder of
	// the singleton jobs' Lease mints and activates.
	Leader         intermediate.Leader
	FollowInterval time.Duration
	// Source is the composite root source the intermediate manager mints
	// under; nil when the configured root cannot be rotated (Start then
	// says why: SourceProblem).
	Source        *Source
	SourceProblem error
	// NewSource builds B's source from the root section the operator names.
	NewSource NewSourceFunc
	// OldRootConfig is the configured root section (A), journaled with the
	// rotation.
	OldRootConfig config.RootConfig
	// Intermediate is the intermediate section: a new root must outlive
	// the rotation and an intermediate's lifetime, and must mint a
	// throwaway intermediate of its profile before it is journaled.
	Intermediate config.IntermediateConfig
	Clock        clock.WithTicker
	Log          *slog.Logger
	// Alerts, when set, receives an alert for each phase (what, where, what
	// meshca does) and for a stuck rotation.
	Alerts Alerter
	// Interval is how often the controller re-evaluates (default 30s).
	Interval time.Duration
	// Waits are the defaults of a rotation's waits (rotation.root); zero
	// fields take DefaultWaits of DefaultCertTTL and MaxCertTTL (the
	// maximum of the workloads' wait adds the minimum in force).
	Waits store.RootRotationWaits
	// DefaultCertTTL and MaxCertTTL are issuance.defaultCertTTL and
	// maxCertTTL.
	DefaultCertTTL, MaxCertTTL time.Duration
	// OnEnter, if set, is called once a phase is journaled and before
	// anything acts on it (tests: kill -9 at each phase).
	OnEnter func(Phase)
}

// DefaultWaits are the waits when the operator names none: the workloads
// wait ends after at least DefaultWorkloadsMinWait once no certificate from
// before the new bundle is left, and at most half the default workload TTL
// plus that minimum (istio-agent renews at half its certificate's
// lifetime); the old leaves' wait ends at the longest TTL a leaf may have.
func DefaultWaits(defaultTTL, maxTTL time.Duration) store.RootRotationWaits {
	return store.RootRotationWaits{WorkloadsMin: DefaultWorkloadsMinWait, WorkloadsMax: defaultTTL/2 + DefaultWorkloadsMinWait, TTLMax: maxTTL}
}

// Controller drives root rotations. Its methods are safe for concurrent use.
type Controller struct {
	o    Options
	clk  clock.WithTicker
	log  *slog.Logger
	wake chan struct{}

	mu sync.Mutex
	// annMu orders the alerts of transitions as they were journaled.
	annMu sync.Mutex
	// rec is the journaled rotation; nil when none was ever started.
	rec *store.RootRotation
	// oldRoots and newRoot are rec's roots, parsed.
	oldRoots []*x509.Certificate
	newRoot  *x509.Certificate
	// waiting, failures, lastErr and lastSuccess are not journaled.
	waiting     string
	next        time.Time
	failures    int
	lastErr     error
	lastSuccess time.Time
	// configHint says which configuration keys to update once done while
	// the configuration still names A.
	configHint string
	// stuckRaised says the stuck alert may fire: raised by this
	// controller, or (at each Run, a term) by an earlier process or
	// another Lease holder, as the alerting engine keeps alerts across
	// both. The next evaluation that is not stuck clears it.
	stuckRaised bool
	// stuckClearFailed is set when clearing the stuck alert failed (the
	// alert store), so that the next evaluation clears it again.
	stuckClearFailed atomic.Bool
	// followed is the rotation and phase ("ID/phase") a follower last
	// adopted (Follow).
	followed string
	// lineages are the signers with their own intermediate (AddLineage).
	lineages []lineage
	// gates hold the roots phases until they pass (AddRootsGate).
	gates []RootsGate
	// shown is the status as of the last time the lock was released:
	// RotationStatus answers with it while a step holds the lock (phase 2
	// and 4 read the issuance records, which takes seconds at a million
	// records), so that a metrics scrape or meshca status never waits.
	shown atomic.Pointer[rotation.Status]
}

// New returns a controller. It reads the journal; a rotation in progress
// (or done) is applied to o.Source at once, before the intermediate
// manager first asks it for roots; B's source is built from the journal.
func New(ctx context.Context, o Options) (*Controller, error) {
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	d := DefaultWaits(o.DefaultCertTTL, o.MaxCertTTL)
	if o.Waits.WorkloadsMin == 0 {
		o.Waits.WorkloadsMin = d.WorkloadsMin
	}
	if o.Waits.WorkloadsMax == 0 {
		o.Waits.WorkloadsMax = o.DefaultCertTTL/2 + o.Waits.WorkloadsMin
	}
	if o.Waits.TTLMax == 0 {
		o.Waits.TTLMax = d.TTLMax
	}
	c := &Controller{o: o, clk: o.Clock, log: o.Log.With("ca", rotation.CARoot), wake: make(chan struct{}, 1), stuckRaised: true}
	rec, err := o.Store.GetRootRotation(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("root rotation journal: %w", err)
	}
	if err := c.load(ctx, rec); err != nil {
		return nil, err
	}
	return c, nil
}

// Run evaluates the rotation every Interval, and at once after Start,
// Resume or Advance, until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	// Each term (Run again after a lost Lease) may follow another holder
	// that raised the stuck alert.
	c.mu.Lock()
	c.stuckRaised = true
	c.mu.Unlock()
	t := c.clk.NewTicker(c.o.Interval)
	defer t.Stop()
	for {
		c.Step(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		case <-c.wake:
		}
	}
}

func (c *Controller) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Step evaluates the rotation once: it acts for the current phase and
// moves on while phases complete. Run calls it; tests call it directly.
func (c *Controller) Step(ctx context.Context) {
	c.mu.Lock()
	var events []phaseEvent
	for range len(phases) {
		ev, moved := c.stepLocked(ctx)
		if ev != nil {
			events = append(events, *ev)
		}
		if !moved {
			break
		}
	}
	c.unlockAndAnnounce(ctx, events, c.statusLocked())
}

// stepLocked acts once for the current phase; moved says that it entered
// the next phase (journaled).
func (c *Controller) stepLocked(ctx context.Context) (*phaseEvent, bool) {
	r := c.rec
	if r == nil || r.Paused {
		return nil, false
	}
	p := Phase(r.Phase)
	now := c.clk.Now()
	var err error
	switch p {
	case PhasePublish, PhaseRemove:
		c.waiting, c.next = fmt.Sprintf("publishing the roots of phase %s", p), time.Time{}
		for _, l := range c.lineagesLocked() {
			if err = l.m.RefreshRoots(ctx); err != nil {
				err = fmt.Errorf("publish the roots%s (RefreshRoots): %w", c.ofLineage(l), err)
				break
			}
		}
		if err == nil {
			err = c.gatesLocked(ctx)
		}
		if err == nil {
			return c.enterLocked(ctx, p.next(), "enter", "controller", "")
		}
	case PhaseSwitch:
		c.waiting, c.next = "activating an intermediate under the new root", time.Time{}
		// Every signer lineage switches, the default first; one that
		// switched before a failure or a restart is not switched again.
		for _, l := range c.lineagesLocked() {
			if err = c.switchLineage(ctx, r.ID, l); err != nil {
				err = fmt.Errorf("switch the intermediate%s (RotateNow): %w", c.ofLineage(l), err)
				break
			}
		}
		if err == nil {
			return c.enterLocked(ctx, p.next(), "enter", "controller", "")
		}
	case PhaseWaitWorkloads:
		n, cerr := c.countBefore(ctx, r.PhaseStartedAt, now)
		old := n.before
		if cerr != nil {
			err = fmt.Errorf("count the workload certificates: %w", cerr)
			break
		}
		minAt, maxAt := r.PhaseStartedAt.Add(r.Waits.WorkloadsMin), r.PhaseStartedAt.Add(r.Waits.WorkloadsMax)
		c.waiting = fmt.Sprintf("%d of %d unexpired workload certificates were issued before both roots were published; %d of %d workload identities got none since", old, n.total, n.stale, n.identities)
		note, uncounted := c.uncountedLocked(r.Waits.WorkloadsMax)
		c.waiting += note
		switch {
		case old == 0 && !uncounted && !now.Before(minAt):
			return c.enterLocked(ctx, p.next(), "enter", "controller", "every unexpired workload certificate was issued with both roots")
		case !now.Before(maxAt):
			ev, moved := c.enterLocked(ctx, p.next(), "enter", "controller", fmt.Sprintf("the maximum wait of %s passed (%s)", r.Waits.WorkloadsMax, c.waiting))
			// Certificates from before are normal here (a renewed
			// workload's previous certificate stays valid until it
			// expires); an identity that got none since is not.
			if ev != nil && n.stale > 0 {
				ev.left = &workloadsLeft{n: n, maxWait: r.Waits.WorkloadsMax}
			}
			return ev, moved
		case old == 0 && !uncounted:
			c.next = minAt
		default:
			c.next = maxAt
		}
	case PhaseWaitTTL:
		left, cerr := c.countUnderOld(ctx, now)
		if cerr != nil {
			err = fmt.Errorf("count the leaves under the old root: %w", cerr)
			break
		}
		maxAt := r.PhaseStartedAt.Add(r.Waits.TTLMax)
		c.waiting = fmt.Sprintf("%d unexpired leaf certificates were issued by intermediates under the old root", left)
		note, uncounted := c.uncountedLocked(r.Waits.TTLMax)
		c.waiting += note
		switch {
		case left == 0 && !uncounted:
			return c.enterLocked(ctx, p.next(), "enter", "controller", "no unexpired leaf under the old root is left")
		case !now.Before(maxAt):
			return c.enterLocked(ctx, p.next(), "enter", "controller", fmt.Sprintf("the longest workload TTL %s passed (%s)", r.Waits.TTLMax, c.waiting))
		}
		c.next = maxAt
	default:
		c.waiting, c.next = "", time.Time{}
		return nil, false
	}
	if err != nil {
		c.failures++
		c.lastErr = err
		c.next = now.Add(c.o.Interval)
		c.log.Error("root rotation: phase action failed; retrying", "rotation", r.ID, "phase", string(p), "failures", c.failures, "error", err)
	}
	return nil, false
}

// phaseEvent is a journaled transition, announced after the lock.
type phaseEvent struct {
	id     string
	phase  Phase
	event  string
	by     string
	detail string
	// left is set when phase 2 ended at its maximum wait with workload
	// identities that got no certificate since both roots were published.
	left *workloadsLeft
}

// workloadsLeft is what phase 2 left behind: identities none of whose
// workloads renewed.
type workloadsLeft struct {
	n       workloadCount
	maxWait time.Duration
}

// enterLocked journals the move to phase p and, once durable, applies it
// to the root source. A journal failure leaves everything as it was.
func (c *Controller) enterLocked(ctx context.Context, p Phase, event, by, detail string) (*phaseEvent, bool) {
	now := c.clk.Now()
	next := *c.rec
	next.Phase, next.PhaseStartedAt, next.Error = string(p), now, ""
	next.History = appendHistory(next.History, store.RootRotationEvent{At: now, Phase: string(p), Event: event, By: by, Detail: detail})
	if err := c.journal(ctx, next); err != nil {
		c.failures++
		c.lastErr = fmt.Errorf("journal phase %s: %w", p, err)
		c.log.Error("root rotation: cannot journal the next phase; retrying", "rotation", next.ID, "phase", string(p), "error", err)
		return nil, false
	}
	if c.o.OnEnter != nil {
		c.o.OnEnter(p)
	}
	c.rec = &next
	c.failures, c.lastErr, c.lastSuccess, c.waiting, c.next = 0, nil, now, "", time.Time{}
	if c.o.Source != nil {
		c.o.Source.setPhase(p)
		if p == PhaseDone && c.followsDone() {
			c.setConfigHint()
		}
	}
	c.log.Info("root rotation: phase "+p.String(), "rotation", next.ID, "event", event, "by", by, "detail", detail)
	return &phaseEvent{id: next.ID, phase: p, event: event, by: by, detail: detail}, true
}

// appendHistory appends e, dropping the oldest entries beyond the bound
// (the first, the start, is kept).
func appendHistory(h []store.RootRotationEvent, e store.RootRotationEvent) []store.RootRotationEvent {
	h = append(append([]store.RootRotationEvent(nil), h...), e)
	if len(h) > store.MaxRootRotationHistory {
		h = append(h[:1], h[len(h)-store.MaxRootRotationHistory+1:]...)
	}
	return h
}

// switchLineage activates an intermediate under B for the lineage l,
// unless its active one already chains to B.
func (c *Controller) switchLineage(ctx context.Context, id string, l lineage) error {
	done, err := c.activeUnderNew(ctx, l.signer)
	if err != nil || done {
		return err
	}
	if _, err := l.m.RotateNow(ctx, "root rotation "+id+": switch to an intermediate under the new root"); err != nil {
		return err
	}
	// The old root leaves in phase 5: never move on while an active
	// intermediate still chains to it.
	if done, err = c.activeUnderNew(ctx, l.signer); err == nil && !done {
		err = errors.New("the intermediate activated at the switch does not chain to the new root")
	}
	return err
}

// activeUnderNew reports whether the active generation of the signer
// lineage already chains to B: the switch happened before a restart
// could journal it.
func (c *Controller) activeUnderNew(ctx context.Context, signer string) (bool, error) {
	gens, err := c.o.Store.ListGenerations(ctx)
	if err != nil {
		return false, err
	}
	for _, g := range gens {
		if !g.Active() || g.Lineage() != signer {
			continue
		}
		cert, err := x509.ParseCertificate(g.CertDER)
		if err != nil {
			return false, fmt.Errorf("generation %d: %w", g.ID, err)
		}
		return issuedBy(cert, []*x509.Certificate{c.newRoot}), nil
	}
	return false, nil
}

// issuedBy reports whether cert is signed by one of roots.
func issuedBy(cert *x509.Certificate, roots []*x509.Certificate) bool {
	for _, r := range roots {
		if root.IssuedBy(cert, r) {
			return true
		}
	}
	return false
}

// RotationStatus implements rotation.Reporter. While a step or an
// operation holds the controller, it returns the status as of the last
// one instead of waiting.
func (c *Controller) RotationStatus() rotation.Status {
	if !c.mu.TryLock() {
		if st := c.shown.Load(); st != nil {
			return *st
		}
		c.mu.Lock()
	}
	defer c.mu.Unlock()
	st := c.statusLocked()
	c.shown.Store(&st)
	return st
}

func (c *Controller) statusLocked() rotation.Status {
	st := rotation.Status{CA: rotation.CARoot, Phase: string(PhaseIdle), LastSuccess: c.lastSuccess}
	r := c.rec
	if r == nil {
		if c.o.SourceProblem != nil {
			st.Waiting = "root rotation is not available: " + c.o.SourceProblem.Error()
		}
		return st
	}
	p := Phase(r.Phase)
	st.Phase, st.PhaseCode, st.Since, st.Paused = string(p), p.Code(), r.PhaseStartedAt, r.Paused
	if st.LastSuccess.IsZero() {
		st.LastSuccess = r.PhaseStartedAt
	}
	if p == PhaseDone {
		st.Waiting = c.configHint
		return st
	}
	st.Waiting, st.Next = c.waiting, c.next
	if r.Paused {
		st.Next = time.Time{}
		st.Waiting = "paused by an operator (meshca rotate resume)"
		return st
	}
	now := c.clk.Now()
	switch {
	case c.failures >= stuckAfterFailures:
		st.Stuck, st.Problem = true, fmt.Sprintf("%d consecutive failures: %v", c.failures, c.lastErr)
	case c.lastErr != nil:
		st.Problem = c.lastErr.Error()
	}
	var maxWait time.Duration
	switch p {
	case PhaseWaitWorkloads:
		maxWait = r.Waits.WorkloadsMax
	case PhaseWaitTTL:
		maxWait = r.Waits.TTLMax
	}
	// A wait ends at its maximum by itself; a phase that lasts two
	// intervals beyond it did not move on.
	if maxWait > 0 && now.After(r.PhaseStartedAt.Add(maxWait+2*c.o.Interval)) && !st.Stuck {
		st.Stuck, st.Problem = true, fmt.Sprintf("phase %s has lasted %s, over its maximum of %s", p, now.Sub(r.PhaseStartedAt).Round(time.Second), maxWait)
	}
	return st
}

// Record returns the journaled rotation; ok is false when none was ever
// started.
func (c *Controller) Record() (store.RootRotation, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rec == nil {
		return store.RootRotation{}, false
	}
	return *c.rec, true
}

// errNoRotation is the error of Pause, Resume and Advance without a
// rotation in progress.
func errNoRotation(what string) error {
	return caerr.New(caerr.FailedPrecondition, "no_root_rotation", "no root rotation is in progress to %s; start one with 'meshca rotate root'", what)
}

// journal durably writes rec under the Lease's fence (the zero fence with
// one replica): a replica that no longer holds the Lease writes nothing
// (intermediate.ErrNotLeader, or store.ErrFenced from the store when it
// lost the Lease without noticing yet).
func (c *Controller) journal(ctx context.Context, rec store.RootRotation) error {
	var fence store.Fence
	if c.o.Leader != nil {
		f, lead := c.o.Leader.Leading()
		if !lead {
			return intermediate.ErrNotLeader
		}
		fence = f
	}
	return c.o.Store.PutRootRotation(ctx, rec, fence)
}

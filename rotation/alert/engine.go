package alert

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"

	"github.com/meshca/meshca/ca/store"
)

// Defaults.
const (
	// DefaultRepeatInterval is how often a firing alert is announced again
	// (Alertmanager's default repeat_interval).
	DefaultRepeatInterval = 4 * time.Hour
	// MinRepeatInterval is the shortest repeat interval accepted.
	MinRepeatInterval = time.Minute
	// DefaultTick is how often the engine looks for repeats that are due.
	DefaultTick = time.Minute
)

// Options configure New.
type Options struct {
	// States keeps the alert states durably; nil keeps them in memory only
	// (they are then forgotten at exit).
	States store.AlertStates
	// Sinks receive every notification.
	Sinks []Sink
	// RepeatInterval: default DefaultRepeatInterval.
	RepeatInterval time.Duration
	// Tick: default DefaultTick.
	Tick       time.Duration
	Clock      clock.WithTicker
	Log        *slog.Logger
	Registerer prometheus.Registerer
}

// Engine is the alert state machine. It is safe for concurrent use.
type Engine struct {
	states  store.AlertStates
	repeat  time.Duration
	tick    time.Duration
	clk     clock.WithTicker
	log     *slog.Logger
	metrics *metrics
	workers []*worker
	running atomic.Bool

	mu    sync.Mutex
	state map[Key]*store.AlertState
	// series are the label values of meshca_alerts_firing set so far.
	series map[[2]string]bool
	// queued holds the Seq of each alert's notification in the sinks'
	// queues, so that one is never queued twice.
	queued map[Key]uint64
	// undelivered holds, for a notification some sinks gave up on (the
	// receiver kept failing, or the sink's queue was full), when it is
	// due again and to which sinks: its state stays pending, and the tick
	// delivers it again to those sinks, redeliverAfter later and then
	// twice as long each time (at most the repeat interval), until it is
	// delivered or superseded.
	undelivered map[Key]redelivery
	// announced holds the keys whose current occurrence's Announce
	// succeeded (or that were firing before a restart).
	announced map[Key]bool

	// ticking, when set (tests), is closed once Run's ticker exists.
	ticking  chan struct{}
	tickOnce sync.Once
	// afterDelivered, when set (tests), is told each delivered notification.
	afterDelivered func(Notification)
}

// New loads the alert states and returns an engine. Notifications that
// were made but not delivered before a restart are queued again; Run
// delivers them.
func New(ctx context.Context, o Options) (*Engine, error) {
	if o.RepeatInterval == 0 {
		o.RepeatInterval = DefaultRepeatInterval
	}
	if o.RepeatInterval < MinRepeatInterval {
		return nil, fmt.Errorf("alert: repeat interval %s is under %s", o.RepeatInterval, MinRepeatInterval)
	}
	if o.Tick <= 0 {
		o.Tick = DefaultTick
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	e := &Engine{
		states:      o.States,
		repeat:      o.RepeatInterval,
		tick:        o.Tick,
		clk:         o.Clock,
		log:         o.Log.With("component", "alerts"),
		metrics:     newMetrics(o.Registerer, o.Sinks),
		state:       map[Key]*store.AlertState{},
		announced:   map[Key]bool{},
		series:      map[[2]string]bool{},
		queued:      map[Key]uint64{},
		undelivered: map[Key]redelivery{},
	}
	for _, s := range o.Sinks {
		e.workers = append(e.workers, newWorker(s, e))
	}
	if e.states == nil {
		return e, nil
	}
	e.mu.Lock()
	redo, err := e.loadLocked(ctx)
	if err != nil {
		e.mu.Unlock()
		return nil, err
	}
	e.gauges()
	loaded := len(e.state)
	e.mu.Unlock()
	e.dispatch(redo) // without mu: delivered takes it
	if loaded > 0 {
		e.log.Info("alert states loaded", "alerts", loaded, "undelivered", len(redo))
	}
	return e, nil
}

// loadLocked replaces the alert states with the store's and returns the
// notifications that were made but not delivered. Called with mu held.
func (e *Engine) loadLocked(ctx context.Context) ([]Notification, error) {
	saved, err := e.states.ListAlertStates(ctx)
	if err != nil {
		return nil, fmt.Errorf("alert: loading the alert states: %w", err)
	}
	e.state, e.announced = map[Key]*store.AlertState{}, map[Key]bool{}
	var redo []Notification
	for _, s := range saved {
		k := Key(s.Key)
		if s.Status == store.AlertResolved && s.Pending == "" {
			continue // delivered; its deletion was lost
		}
		e.state[k] = &s
		e.announced[k] = true
		if s.Pending != "" {
			redo = append(redo, Notification{Kind: Kind(s.Pending), State: s, At: e.clk.Now()})
		}
	}
	return redo, nil
}

// requeue starts a run: it empties the sinks' queues (what a previous
// run left there is still pending in the states), reloads the states from
// the store (another replica may have changed them while this one did not
// lead; if the store cannot be read, the states in memory are used) and
// queues every undelivered notification again.
func (e *Engine) requeue(ctx context.Context) {
	e.mu.Lock()
	// Under mu, so that a Raise that stored its state before the reload
	// either had its notification drained here or finds it queued again
	// (dispatch skips a notification already queued).
	for _, w := range e.workers {
		w.drain()
	}
	e.queued = map[Key]uint64{}
	e.undelivered = map[Key]redelivery{} // what is pending is queued below
	var redo []Notification
	if e.states != nil {
		var err error
		if redo, err = e.loadLocked(ctx); err != nil {
			e.log.Warn("reloading the alert states failed; delivering those in memory", "error", err)
		}
	}
	if redo == nil {
		for _, s := range e.state {
			if s.Pending != "" {
				redo = append(redo, Notification{Kind: Kind(s.Pending), State: *s, At: e.clk.Now()})
			}
		}
	}
	e.gauges()
	e.mu.Unlock()
	e.dispatch(redo)
}

// Raise records that a's problem stands. A new alert, or a new
// occurrence (another Fingerprint or Severity), fires: the sinks are
// notified and a.Announce is called. Raising the firing occurrence again
// only updates what it says (Summary, Action, Expires) for the next repeat.
// An error means the state was not stored or Announce failed; raise again.
func (e *Engine) Raise(ctx context.Context, a Alert) error {
	if err := a.validate(); err != nil {
		return err
	}
	k := a.Key()
	e.mu.Lock()
	now := e.clk.Now()
	cur, ok := e.state[k]
	var out []Notification
	switch {
	case ok && cur.Status == store.AlertFiring && cur.Fingerprint == a.Fingerprint && cur.Severity == string(a.Severity):
		if cur.Summary != a.Summary || cur.Action != a.Action || !cur.Expires.Equal(a.Expires) {
			next := *cur
			next.Summary, next.Action, next.Expires = a.Summary, a.Action, a.Expires
			if err := e.save(ctx, &next); err != nil {
				e.mu.Unlock()
				return err
			}
			e.state[k] = &next
		}
	default:
		next := store.AlertState{
			Key: string(k), Rule: a.Rule, Object: a.Object, Severity: string(a.Severity),
			Summary: a.Summary, Action: a.Action, Expires: a.Expires, Fingerprint: a.Fingerprint,
			Status: store.AlertFiring, StartsAt: now, NotifiedAt: now, Pending: string(KindFire),
		}
		if ok {
			next.Seq = cur.Seq
		}
		next.Seq++
		if err := e.save(ctx, &next); err != nil {
			e.mu.Unlock()
			return err
		}
		e.state[k] = &next
		delete(e.announced, k)
		out = append(out, Notification{Kind: KindFire, State: next, At: now})
		e.log.Warn("alert firing", "alert", a.Rule, "object", a.Object, "severity", a.Severity, "summary", a.Summary)
		e.gauges()
	}
	announce := !e.announced[k] && a.Announce != nil
	e.mu.Unlock()
	e.dispatch(out)
	if !announce {
		return nil
	}
	if err := a.Announce(); err != nil {
		return err
	}
	e.mu.Lock()
	if cur, ok := e.state[k]; ok && cur.Fingerprint == a.Fingerprint && cur.Status == store.AlertFiring {
		e.announced[k] = true
	}
	e.mu.Unlock()
	return nil
}

// Clear records that the problem of key is gone: a firing alert is
// resolved and the sinks are told. Clearing an alert that does not fire
// does nothing, so rules call Clear on every check that passes.
func (e *Engine) Clear(ctx context.Context, key Key) error {
	e.mu.Lock()
	cur, ok := e.state[key]
	if !ok || cur.Status != store.AlertFiring {
		e.mu.Unlock()
		return nil
	}
	now := e.clk.Now()
	next := *cur
	next.Status, next.EndsAt, next.Pending = store.AlertResolved, now, string(KindResolved)
	next.Seq++
	if err := e.save(ctx, &next); err != nil {
		e.mu.Unlock()
		return err
	}
	e.state[key] = &next
	delete(e.announced, key)
	e.gauges()
	e.mu.Unlock()
	e.log.Info("alert resolved", "alert", next.Rule, "object", next.Object)
	e.dispatch([]Notification{{Kind: KindResolved, State: next, At: now}})
	return nil
}

// Firing returns the firing alerts in key order.
func (e *Engine) Firing() []store.AlertState {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []store.AlertState
	for _, s := range e.state {
		if s.Status == store.AlertFiring {
			out = append(out, *s)
		}
	}
	slices.SortFunc(out, func(a, b store.AlertState) int {
		switch {
		case a.Key < b.Key:
			return -1
		case a.Key > b.Key:
			return 1
		}
		return 0
	})
	return out
}

// Run delivers notifications and repeats firing alerts until ctx ends.
// It may be called again once it has returned (a replica that takes the
// Lease of the singleton jobs again): each run starts from the stored
// states and delivers what is still undelivered.
func (e *Engine) Run(ctx context.Context) error {
	if !e.running.CompareAndSwap(false, true) {
		return errors.New("alert: Run is already running")
	}
	defer e.running.Store(false)
	e.requeue(ctx)
	var wg sync.WaitGroup
	for _, w := range e.workers {
		wg.Go(func() { w.run(ctx) })
	}
	t := e.clk.NewTicker(e.tick)
	defer t.Stop()
	e.tickOnce.Do(func() {
		if e.ticking != nil {
			close(e.ticking)
		}
	})
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case <-t.C():
			e.repeatDue(ctx)
		}
	}
}

// redeliverAfter is how long after a sink gave up on a notification it is
// delivered again.
const redeliverAfter = 5 * time.Minute

// redelivery is a notification's next delivery to the sinks that gave up
// on it.
type redelivery struct {
	// seq is the Seq of the notification given up on; a later one
	// supersedes it.
	seq   uint64
	at    time.Time
	sinks map[string]bool
	// wait is the delay that gave at; the next one is twice as long.
	wait time.Duration
}

// redeliveryOut is a notification due again to some sinks.
type redeliveryOut struct {
	n     Notification
	sinks map[string]bool
}

// repeatDue announces again every alert that has fired for a repeat
// interval since it was last announced, and delivers again what a sink
// gave up on redeliverAfter ago (delivered).
func (e *Engine) repeatDue(ctx context.Context) {
	e.mu.Lock()
	now := e.clk.Now()
	var out []Notification
	for k, cur := range e.state {
		if cur.Status != store.AlertFiring || now.Sub(cur.NotifiedAt) < e.repeat {
			continue
		}
		next := *cur
		next.NotifiedAt, next.Pending = now, string(KindRepeat)
		next.Seq++
		if err := e.save(ctx, &next); err != nil {
			e.log.Error("storing an alert state failed; the repeat is retried", "alert", cur.Rule, "object", cur.Object, "error", err)
			continue
		}
		e.state[k] = &next
		out = append(out, Notification{Kind: KindRepeat, State: next, At: now})
	}
	// After the repeats: one supersedes what a sink gave up on.
	var again []redeliveryOut
	for k, r := range e.undelivered {
		cur, ok := e.state[k]
		switch {
		case !ok || cur.Pending == "" || cur.Seq != r.seq:
			delete(e.undelivered, k) // delivered, or superseded (to every sink)
		case !now.Before(r.at):
			// Kept (for the next delay) until delivered or superseded.
			again = append(again, redeliveryOut{Notification{Kind: Kind(cur.Pending), State: *cur, At: now}, r.sinks})
		}
	}
	e.mu.Unlock()
	e.dispatch(out)
	for _, r := range again {
		e.dispatchTo(r.n, r.sinks)
	}
}

// delivered is called once every sink is done with n (sent, refused for
// good, given up or dropped). When every sink delivered it (or refused it
// for good) the state no longer has anything pending, and a resolved
// alert is forgotten. When some sinks gave up on it or dropped it
// (failed), it stays pending and is delivered again to those sinks
// (repeatDue), so that an alert raised during a Slack outage is not lost
// until its next repeat.
func (e *Engine) delivered(n Notification, failed map[string]bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.afterDelivered != nil {
		defer e.afterDelivered(n)
	}
	k := Key(n.State.Key)
	if seq, ok := e.queued[k]; ok && seq == n.State.Seq {
		delete(e.queued, k)
	}
	cur, ok := e.state[k]
	if !ok || cur.Seq != n.State.Seq {
		return // superseded by a later notification
	}
	if len(failed) > 0 {
		wait := redeliverAfter
		if prev, ok := e.undelivered[k]; ok && prev.seq == n.State.Seq {
			wait = min(2*prev.wait, max(e.repeat, redeliverAfter))
		}
		e.undelivered[k] = redelivery{seq: n.State.Seq, at: e.clk.Now().Add(wait), sinks: failed, wait: wait}
		return
	}
	delete(e.undelivered, k)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if cur.Status == store.AlertResolved {
		if e.states != nil {
			if err := e.states.DeleteAlertState(ctx, cur.Key); err != nil {
				e.log.Error("deleting a resolved alert's state failed", "alert", cur.Rule, "object", cur.Object, "error", err)
				return
			}
		}
		delete(e.state, k)
		return
	}
	next := *cur
	next.Pending = ""
	if err := e.save(ctx, &next); err != nil {
		e.log.Error("storing an alert state failed", "alert", cur.Rule, "object", cur.Object, "error", err)
		return
	}
	e.state[k] = &next
}

// save stores s durably (when the engine has a store). Called with mu held.
func (e *Engine) save(ctx context.Context, s *store.AlertState) error {
	if e.states == nil {
		return nil
	}
	if err := e.states.PutAlertState(ctx, *s); err != nil {
		return fmt.Errorf("alert %s: storing its state: %w", s.Key, err)
	}
	return nil
}

// dispatch queues each notification on every sink, never blocking.
// A notification already queued (the same alert and Seq) is not queued
// again. Called without mu.
func (e *Engine) dispatch(ns []Notification) {
	for _, n := range ns {
		e.dispatchTo(n, nil)
	}
}

// dispatchTo queues n on the sinks named in sinks (nil: every sink).
// Called without mu.
func (e *Engine) dispatchTo(n Notification, sinks map[string]bool) {
	{
		if len(e.workers) == 0 {
			e.delivered(n, nil)
			return
		}
		k := Key(n.State.Key)
		var to []*worker
		for _, w := range e.workers {
			if sinks == nil || sinks[w.sink.Name()] {
				to = append(to, w)
			}
		}
		if len(to) == 0 {
			return
		}
		e.mu.Lock()
		if seq, ok := e.queued[k]; ok && seq == n.State.Seq {
			e.mu.Unlock()
			return
		}
		e.queued[k] = n.State.Seq
		e.mu.Unlock()
		d := &delivery{n: n, e: e}
		d.remaining.Store(int32(len(to)))
		for _, w := range to {
			w.enqueue(d)
		}
	}
}

// gauges sets meshca_alerts_firing, removing the series of what no
// longer fires (no Reset: a scrape never sees a firing alert missing).
// Called with mu held.
func (e *Engine) gauges() {
	counts := map[[2]string]int{}
	for _, s := range e.state {
		if s.Status == store.AlertFiring {
			counts[[2]string{s.Rule, s.Severity}]++
		}
	}
	for k := range e.series {
		if _, ok := counts[k]; !ok {
			e.metrics.firing.DeleteLabelValues(k[0], k[1])
			delete(e.series, k)
		}
	}
	for k, n := range counts {
		e.metrics.firing.WithLabelValues(k[0], k[1]).Set(float64(n))
		e.series[k] = true
	}
}

// delivery is one notification on its way to every sink.
type delivery struct {
	n         Notification
	e         *Engine
	remaining atomic.Int32
	// failed names the sinks that gave up on it or dropped it.
	mu     sync.Mutex
	failed map[string]bool
}

// fail records that sink gave up on d.
func (d *delivery) fail(sink string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.failed == nil {
		d.failed = map[string]bool{}
	}
	d.failed[sink] = true
}

// done is called by each sink's worker when it is finished with d.
func (d *delivery) done() {
	if d.remaining.Add(-1) == 0 {
		d.mu.Lock()
		failed := d.failed
		d.mu.Unlock()
		d.e.delivered(d.n, failed)
	}
}

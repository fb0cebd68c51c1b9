// Package rules owns meshca's alert rules: the checks that look at the CA
// inventory, the CRLs, the root source, the rotating controllers and the
// workload certificates, and raise or clear alerts through the alerting
// engine (rotation/alert), which fires, repeats, resolves and persists them.
//
// A Sweeper evaluates every rule at an interval on an injected clock. Each
// evaluation returns the alerts that stand now; the Sweeper raises them and
// clears every firing alert of the rule's names that is no longer among
// them (the firing set comes from the engine, whose state is in the store,
// so a problem that went away while meshca was down is cleared by the first
// sweep after the restart). A rule that could not look (its source is down)
// clears nothing, unless it answered for what it could not see
// (Incomplete).
//
// Alert keys are made of the rule's name and of values meshca controls:
// fixed object kinds, meshca's own scope names, names of cluster objects
// meshca lists, certificate serials, and namespaces from a bounded top-N
// aggregate; never a caller's input.
package rules

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"k8s.io/utils/clock"

	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/rotation/alert"
)

// DefaultInterval is how often the rules are evaluated.
const DefaultInterval = time.Minute

// Alerter is the alerting engine (alert.Engine).
type Alerter interface {
	Raise(ctx context.Context, a alert.Alert) error
	Clear(ctx context.Context, key alert.Key) error
	Firing() []store.AlertState
}

// Rule is one check.
type Rule interface {
	// Names are the alert rule names (alert.Alert.Rule) it raises: every
	// firing alert of these names that Evaluate no longer returns is
	// cleared. No two rules share a name.
	Names() []string
	// Evaluate returns the alerts that stand at now. With an error the
	// alerts returned are raised but nothing is cleared: the rule could not
	// see everything (unless the error is an Incomplete).
	Evaluate(ctx context.Context, now time.Time) ([]alert.Alert, error)
}

// Forgetter is a Rule that remembers between evaluations; Run calls Forget
// when it starts (a new Lease term: other replicas may have evaluated
// meanwhile).
type Forgetter interface {
	Forget()
}

// Incomplete is the error of an Evaluate that could not look at
// everything but answered for what it could not see (from a source's last
// listing, say): the error is reported, and the rule's firing alerts that
// it no longer returns are cleared as after a complete evaluation.
type Incomplete struct {
	Err error
}

func (e *Incomplete) Error() string { return e.Err.Error() }
func (e *Incomplete) Unwrap() error { return e.Err }

// Sweeper evaluates rules periodically.
type Sweeper struct {
	Alerts   Alerter
	Rules    []Rule
	Interval time.Duration // default DefaultInterval
	Clock    clock.WithTicker
	Log      *slog.Logger

	// ticking, when set (tests), is closed once Run's ticker exists;
	// swept, when set, is told the time of each sweep that Run made.
	ticking chan struct{}
	swept   chan time.Time
}

// Run sweeps at once and then every Interval until ctx ends.
func (s *Sweeper) Run(ctx context.Context) {
	for _, r := range s.Rules {
		if f, ok := r.(Forgetter); ok {
			f.Forget()
		}
	}
	interval := s.Interval
	if interval <= 0 {
		interval = DefaultInterval
	}
	clk := s.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	t := clk.NewTicker(interval)
	defer t.Stop()
	if s.ticking != nil {
		close(s.ticking)
	}
	for {
		now := s.Sweep(ctx)
		if s.swept != nil {
			s.swept <- now
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
	}
}

// Sweep evaluates every rule once and returns the time it evaluated at.
func (s *Sweeper) Sweep(ctx context.Context) time.Time {
	log := s.Log
	if log == nil {
		log = slog.Default()
	}
	clk := s.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	now := clk.Now()
	firing := s.Alerts.Firing()
	for _, r := range s.Rules {
		if err := s.sweepRule(ctx, r, now, firing); err != nil {
			if ctx.Err() != nil {
				return now // stopping: the sweep was cut short, nothing failed
			}
			log.Warn("alert rule incomplete; its alerts are evaluated again at the next sweep", "rules", r.Names(), "error", err)
		}
	}
	return now
}

func (s *Sweeper) sweepRule(ctx context.Context, r Rule, now time.Time, firing []store.AlertState) error {
	standing, evalErr := r.Evaluate(ctx, now)
	var errs []error
	if evalErr != nil {
		errs = append(errs, evalErr)
	}
	keep := map[alert.Key]bool{}
	for _, a := range standing {
		keep[a.Key()] = true
		if err := s.Alerts.Raise(ctx, a); err != nil {
			errs = append(errs, err)
		}
	}
	var inc *Incomplete
	if evalErr != nil && !errors.As(evalErr, &inc) {
		return errors.Join(errs...)
	}
	names := map[string]bool{}
	for _, n := range r.Names() {
		names[n] = true
	}
	for _, f := range firing {
		if k := alert.Key(f.Key); names[f.Rule] && !keep[k] {
			if err := s.Alerts.Clear(ctx, k); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

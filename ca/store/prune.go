package store

import (
	"context"
	"log/slog"
	"time"

	"k8s.io/utils/clock"
)

// Pruner deletes issuance records whose certificates expired more than
// Retention ago, every Interval, until its context ends.
type Pruner struct {
	Records   Issuances
	Retention time.Duration
	Interval  time.Duration
	Log       *slog.Logger
	// Clock is the wall clock (nil means the real one); tests inject a fake
	// clock and step it instead of sleeping.
	Clock clock.Clock
	// Pruned is called with the number of records removed by each pass.
	Pruned func(n int)
}

// PruneOnce runs a single pass.
func (p *Pruner) PruneOnce(ctx context.Context) (int, error) {
	n, err := p.Records.PruneIssuances(ctx, p.clock().Now().Add(-p.Retention))
	if p.Pruned != nil {
		p.Pruned(n)
	}
	return n, err
}

// Run prunes immediately and then every Interval until ctx is done.
func (p *Pruner) Run(ctx context.Context) {
	clk := p.clock()
	log := p.Log
	if log == nil {
		log = slog.Default()
	}
	for {
		n, err := p.PruneOnce(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Error("pruning expired issuance records failed", "error", err)
		case n > 0:
			log.Info("pruned expired issuance records", "count", n, "retention", p.Retention)
		}
		t := clk.NewTimer(p.Interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
	}
}

func (p *Pruner) clock() clock.Clock {
	if p.Clock == nil {
		return clock.RealClock{}
	}
	return p.Clock
}

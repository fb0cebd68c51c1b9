package store

import (
	"context"
	"log/slog"
	"time"
)

// Pruner deletes issuance records whose certificates expired more than
// Retention ago, every Interval, until its context ends.
type Pruner struct {
	Records   Issuances
	Retention time.Duration
	Interval  time.Duration
	Log       *slog.Logger
	// Now and After make the loop testable without sleeping.
	Now   func() time.Time
	After func(time.Duration) <-chan time.Time
	// Pruned is called with the number of records removed by each pass.
	Pruned func(n int)
}

// PruneOnce runs a single pass.
func (p *Pruner) PruneOnce(ctx context.Context) (int, error) {
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	n, err := p.Records.PruneIssuances(ctx, now().Add(-p.Retention))
	if p.Pruned != nil {
		p.Pruned(n)
	}
	return n, err
}

// Run prunes immediately and then every Interval until ctx is done.
func (p *Pruner) Run(ctx context.Context) {
	after := time.After
	if p.After != nil {
		after = p.After
	}
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
		select {
		case <-ctx.Done():
			return
		case <-after(p.Interval):
		}
	}
}

package rootrotation

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/meshca/meshca/ca/store"
)

// Follow keeps a replica that does not hold the Lease of the singleton
// jobs in step with the holder's root rotation: every FollowInterval
// (default 5 s), while
// Options.Leader says this replica does not lead, it reads the journal
// and, when the rotation or its phase changed, adopts it (the phase's
// roots and B's source) and refreshes the roots of every lineage, so that
// the chains this replica hands out and the roots its authenticators
// trust are the phase's (A and B from phase 1 on). Without it a follower
// kept the roots it started with until a new generation: workloads it
// served in phases 1 and 2 never learnt B before the switch to B. Run
// (the holder's job) does this itself. Follow returns when ctx ends.
func (c *Controller) Follow(ctx context.Context) {
	if c.o.Leader == nil {
		return // one replica: Run is the only one
	}
	every := c.o.FollowInterval
	if every <= 0 {
		every = 5 * time.Second
	}
	t := c.clk.NewTicker(every)
	defer t.Stop()
	for {
		if _, lead := c.o.Leader.Leading(); !lead {
			if err := c.FollowOnce(ctx); err != nil && ctx.Err() == nil {
				c.log.Warn("root rotation: could not follow the lease holder's journal; retrying", "error", err, "every", every)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
	}
}

// FollowOnce adopts the journaled rotation if it is not the one this
// replica last adopted (by ID and phase).
//
// It reads the journal and checks the Lease under c.mu: a replica that
// gained the Lease meanwhile runs Step, which owns c.rec, and a journal
// read before that Step moved on must not overwrite it.
func (c *Controller) FollowOnce(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.o.Leader != nil {
		if _, lead := c.o.Leader.Leading(); lead {
			return nil
		}
	}
	rec, err := c.o.Store.GetRootRotation(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the root rotation journal: %w", err)
	}
	key := rec.ID + "/" + rec.Phase
	if key == c.followed {
		return nil
	}
	if err := c.load(ctx, rec); err != nil {
		return err
	}
	for _, l := range c.lineagesLocked() {
		if err := l.m.RefreshRoots(ctx); err != nil {
			// Again at the next interval: the lineage may not have
			// adopted the holder's new generation yet.
			return fmt.Errorf("root rotation %s (phase %s): refresh the roots%s: %w", rec.ID, rec.Phase, c.ofLineage(l), err)
		}
	}
	c.followed = key
	c.log.Info("root rotation: following the lease holder", "rotation", rec.ID, "phase", rec.Phase)
	return nil
}

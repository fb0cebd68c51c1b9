package rootrotation

import (
	"context"
	"fmt"
)

// RootsGate is asked after every lineage published the roots of phase 1
// (publish-both-roots) or phase 5 (remove-old-root); an error holds the
// phase, which is retried at the next step. serve's gate reads the roots
// back from every other cluster of the mesh, so that no cluster moves to
// an intermediate under the new root before every cluster trusts both
// (Istio's "Plug in CA Certificates" root rotation, phases 1 to 3).
type RootsGate func(ctx context.Context) error

// AddRootsGate adds a gate to the roots phases. Call it before Run.
func (c *Controller) AddRootsGate(g RootsGate) {
	c.mu.Lock()
	c.gates = append(c.gates, g)
	c.mu.Unlock()
}

// gatesLocked runs every gate; c.mu is held.
func (c *Controller) gatesLocked(ctx context.Context) error {
	for _, g := range c.gates {
		if err := g(ctx); err != nil {
			return fmt.Errorf("publish the roots: %w", err)
		}
	}
	return nil
}

package rootrotation

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"

	"github.com/meshca/meshca/ca/store"
)

// load adopts a journaled record: its roots, and B's source for o.Source.
func (c *Controller) load(ctx context.Context, rec store.RootRotation) error {
	p := Phase(rec.Phase)
	if !p.Valid() {
		return fmt.Errorf("root rotation %s: the journal names an unknown phase %q", rec.ID, rec.Phase)
	}
	old, newRoot, err := parseRoots(rec)
	if err != nil {
		return err
	}
	prev := c.rec
	c.rec, c.oldRoots, c.newRoot = &rec, old, newRoot
	if c.o.Source == nil {
		if p.InProgress() {
			return fmt.Errorf("root rotation %s is in phase %s, but the configured root cannot rotate: %v", rec.ID, p, c.o.SourceProblem)
		}
		return nil
	}
	if p == PhaseDone && !c.followsDone() {
		return nil
	}
	if prev != nil && prev.ID == rec.ID && bytes.Equal(prev.NewRootSource, rec.NewRootSource) && c.o.Source.hasNext() {
		// A later phase of the rotation adopted before (Follow): B's
		// source already runs; building another would leave this one
		// running for good.
		c.o.Source.set(p, old, newRoot, nil)
		if p == PhaseDone && Phase(prev.Phase) != PhaseDone {
			c.setConfigHint()
		}
		return nil
	}
	rc, err := decodeRootConfig(rec.NewRootSource)
	if err != nil {
		return fmt.Errorf("root rotation %s: the journaled new root source: %w", rec.ID, err)
	}
	next, err := c.o.NewSource(ctx, rc)
	if err != nil {
		return fmt.Errorf("root rotation %s (phase %s): the new root's source (%s): %w", rec.ID, p, describeRoot(rc), err)
	}
	c.o.Source.set(p, old, newRoot, next)
	if p == PhaseDone {
		c.setConfigHint()
	}
	return nil
}

// setConfigHint says, in the status and the log, which configuration keys
// to update once a rotation is done while the configuration names A.
func (c *Controller) setConfigHint() {
	rc, err := decodeRootConfig(c.rec.NewRootSource)
	if err != nil {
		return
	}
	c.configHint = fmt.Sprintf("the configuration still names the old root; the journal of root rotation %s wins and meshca uses the new root. Update the configuration: %s", c.rec.ID, configKeys(rc))
	c.log.Warn("root rotation: "+c.configHint, "rotation", c.rec.ID)
}

// followsDone reports whether, after a finished rotation, the configured
// root (A's source) is still one of the old roots, so that the journal's
// B must stand in for it.
func (c *Controller) followsDone() bool {
	roots, err := c.o.Source.Old().Roots(context.Background())
	if err != nil || len(roots) == 0 {
		// Cannot tell: the journal wins.
		return true
	}
	for _, r := range c.oldRoots {
		if r.Equal(roots[0]) {
			return true
		}
	}
	return false
}

func parseRoots(rec store.RootRotation) ([]*x509.Certificate, *x509.Certificate, error) {
	var old []*x509.Certificate
	for i, d := range rec.OldRootsDER {
		c, err := x509.ParseCertificate(d)
		if err != nil {
			return nil, nil, fmt.Errorf("root rotation %s: journaled old root %d: %w", rec.ID, i+1, err)
		}
		old = append(old, c)
	}
	n, err := x509.ParseCertificate(rec.NewRootDER)
	if err != nil {
		return nil, nil, fmt.Errorf("root rotation %s: journaled new root: %w", rec.ID, err)
	}
	return old, n, nil
}

package intermediate

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/rotation"
)

// Leader tells a Manager whether this replica holds the Lease of meshca's
// singleton jobs (a Kubernetes coordination.k8s.io/v1 Lease, taken through
// client-go's leaderelection). Only the holder mints, verifies and
// activates; the other replicas follow the store.
type Leader interface {
	// Leading reports whether this replica holds the Lease now, and the
	// fence its writes carry (the holder's identity and the Lease's
	// spec.leaseTransitions).
	Leading() (store.Fence, bool)
}

// defaultFollowInterval is how often a follower reads the store's active
// generation (Options.FollowInterval).
const defaultFollowInterval = 5 * time.Second

// ErrNotLeader is matched by the error of a rotation step asked of a
// replica that does not hold the Lease.
var ErrNotLeader = errors.New("this replica does not hold the lease of the singleton jobs; the lease holder rotates")

// leading reports whether this Manager may write the journal, and under
// which fence. Without a Leader (one replica) it always may, unfenced.
func (m *Manager) leading() (store.Fence, bool) {
	if m.leader == nil {
		return store.Fence{}, true
	}
	return m.leader.Leading()
}

// startFollower is Start on a replica that does not lead: it takes the
// store's active generation and never mints. While the store has no usable
// one it waits for the lease holder to make one (polling every
// FollowInterval), or for the Lease; led reports that the Lease was taken
// meanwhile and the caller starts as the leader.
func (m *Manager) startFollower(ctx context.Context) (mat *authority.Material, led bool, err error) {
	logged := false
	for {
		if _, lead := m.leading(); lead {
			return nil, true, nil
		}
		mat, err := m.loader.ActiveMaterial(ctx, 0)
		var unusable *authority.UnusableError
		switch {
		case errors.As(err, &unusable):
			if !logged {
				m.log.Info("no usable active intermediate; waiting for the lease holder to make one", unusable.Attrs()...)
				logged = true
			}
		case err != nil:
			return nil, false, err
		default:
			m.active = mat
			m.log.Info("following the lease holder's active intermediate", "generation", mat.Generation)
			return mat, false, m.loadRetained(ctx)
		}
		t := m.clk.NewTimer(m.followEvery)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, false, ctx.Err()
		case <-t.C():
		}
	}
}

// follow is evaluate on a follower: it adopts the generation the lease
// holder activated (and tells the subscribers), drops retired generations
// whose grace period ended, and redelivers failed changes. It never writes
// the journal.
func (m *Manager) follow(ctx context.Context) {
	now := m.clk.Now()
	if m.waitingToRetry(ctx, now) {
		return
	}
	if err := m.reload(ctx); err != nil {
		m.fail(err)
		return
	}
	if m.pending != nil {
		return
	}
	if dropped := m.expireRetained(ctx, now); dropped {
		m.notify(ctx, rotation.Change{Active: m.active, Retained: m.retainedMaterial(), Reason: rotation.ReasonRetired})
		if m.pending != nil {
			return
		}
	}
	m.succeed()
}

// reload adopts the store's active generation when another replica
// activated one: the next slot is dropped (the journal decides again) and
// the subscribers get a ReasonActivated change. An unusable active
// generation (the lease holder has to act) keeps the current one signing.
func (m *Manager) reload(ctx context.Context) error {
	mat, err := m.loader.ActiveMaterial(ctx, 0)
	var unusable *authority.UnusableError
	if errors.As(err, &unusable) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the active intermediate: %w", err)
	}
	if m.active != nil && mat.Generation == m.active.Generation {
		return nil
	}
	prev := m.active
	m.active, m.next = mat, nil
	if err := m.loadRetained(ctx); err != nil {
		return err
	}
	m.lastSuccess(m.clk.Now())
	m.log.Info("adopted the intermediate another replica activated", "generation", mat.Generation, "previous", generationOf(prev),
		"not_after", mat.Bundle.Cert.NotAfter)
	m.notify(ctx, rotation.Change{Active: mat, Retained: m.retainedMaterial(), Reason: rotation.ReasonActivated})
	return nil
}

// switchActive makes next the active generation in the store. On a store
// that compares and sets (store.GenerationSwitcher, for several replicas)
// the switch names the generation it replaces (prev; none: the lineage's
// active one in the store, which Start found unusable) and carries the
// Lease's fence: when another replica moved first, or a newer lease
// holder has written, nothing changes and the error matches
// store.ErrConflict or store.ErrFenced.
func (m *Manager) switchActive(ctx context.Context, next, prev *authority.Material, now time.Time) error {
	fence, lead := m.leading()
	if !lead {
		return ErrNotLeader
	}
	sw, ok := m.st.(store.GenerationSwitcher)
	if !ok {
		return m.st.ActivateGeneration(ctx, next.Generation, now)
	}
	replaces := generationOf(prev)
	if prev == nil {
		id, err := m.storeActive(ctx)
		if err != nil {
			return err
		}
		replaces = id
	}
	return sw.SwitchGeneration(ctx, next.Generation, replaces, fence, now)
}

// storeActive is the id of the lineage's active generation in the store
// (0: none).
func (m *Manager) storeActive(ctx context.Context) (uint64, error) {
	gens, err := m.st.ListGenerations(ctx)
	if err != nil {
		return 0, err
	}
	for _, g := range gens {
		if g.Active() && g.Lineage() == m.loader.Signer {
			return g.ID, nil
		}
	}
	return 0, nil
}

// lostRace handles a switch another replica won (or that a newer lease
// holder fenced): the verified successor is dropped and the store's
// active generation adopted, so that there is never a second one.
func (m *Manager) lostRace(ctx context.Context, err error) error {
	m.next = nil
	if rerr := m.reload(ctx); rerr != nil {
		err = errors.Join(err, rerr)
	}
	return err
}

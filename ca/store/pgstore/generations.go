package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/meshca/meshca/ca/store"
)

// AddGeneration stores g under the next ID of the generation_ids
// sequence, prepared.
func (s *Store) AddGeneration(ctx context.Context, g store.Generation) (store.Generation, error) {
	g.ActivatedAt, g.RetiredAt = time.Time{}, time.Time{}
	var id int64
	if err := s.pool.QueryRow(ctx, "SELECT nextval('generation_ids')").Scan(&id); err != nil {
		return store.Generation{}, err
	}
	g.ID = uint64(id)
	v, err := json.Marshal(g)
	if err != nil {
		return store.Generation{}, err
	}
	if _, err := s.pool.Exec(ctx, "INSERT INTO generations (id, signer, state, record) VALUES ($1, $2, $3, $4)",
		id, g.Lineage(), string(g.State()), v); err != nil {
		return store.Generation{}, err
	}
	return g, nil
}

// ActivateGeneration makes id the active generation of its signer lineage
// and retires the lineage's previous one, in one transaction that first
// locks every generation of the lineage (SELECT ... FOR UPDATE, in ID
// order so that two activations never deadlock). A second replica's
// activation in the same lineage waits for the first to commit and then
// works on what it committed: never two active in a lineage, never none.
// The unique index generations_one_active_per_lineage holds the invariant
// even against a writer that skipped the locks.
func (s *Store) ActivateGeneration(ctx context.Context, id uint64, at time.Time) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		target, gens, err := lockLineage(ctx, tx, id)
		if err != nil {
			return err
		}
		switch target.State() {
		case store.StateRetired:
			return fmt.Errorf("activate generation %d (retired at %s): %w", id, target.RetiredAt.UTC().Format(time.RFC3339), store.ErrRetired)
		case store.StateActive:
			return nil
		}
		return activateIn(ctx, tx, gens, target, at)
	})
}

// lockLineage locks every generation of id's signer lineage, in ID order,
// and returns id's record (among them) and all of them.
func lockLineage(ctx context.Context, tx pgx.Tx, id uint64) (*store.Generation, []store.Generation, error) {
	var signer string
	err := tx.QueryRow(ctx, "SELECT signer FROM generations WHERE id = $1", int64(id)).Scan(&signer)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil, fmt.Errorf("generation %d: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, nil, err
	}
	gens, err := scanGenerations(tx.Query(ctx, "SELECT record FROM generations WHERE signer = $1 ORDER BY id FOR UPDATE", signer))
	if err != nil {
		return nil, nil, err
	}
	for i := range gens {
		if gens[i].ID == id {
			return &gens[i], gens, nil
		}
	}
	return nil, nil, fmt.Errorf("generation %d: %w", id, store.ErrNotFound)
}

// activateIn activates target at at and retires the other active
// generations of gens (its locked lineage).
func activateIn(ctx context.Context, tx pgx.Tx, gens []store.Generation, target *store.Generation, at time.Time) error {
	// Retire first: the unique index is checked row by row.
	for _, g := range gens {
		if g.ID != target.ID && g.Active() {
			g.RetiredAt = at
			if err := putGeneration(ctx, tx, g); err != nil {
				return err
			}
		}
	}
	target.ActivatedAt, target.RetiredAt = at, time.Time{}
	return putGeneration(ctx, tx, *target)
}

// MarkGenerationVerified records that id verified at at.
func (s *Store) MarkGenerationVerified(ctx context.Context, id uint64, at time.Time) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		gens, err := scanGenerations(tx.Query(ctx, "SELECT record FROM generations WHERE id = $1 FOR UPDATE", int64(id)))
		if err != nil {
			return err
		}
		if len(gens) == 0 {
			return fmt.Errorf("generation %d: %w", id, store.ErrNotFound)
		}
		g := gens[0]
		g.VerifiedAt = at
		return putGeneration(ctx, tx, g)
	})
}

// ListGenerations returns every generation in ID order.
func (s *Store) ListGenerations(ctx context.Context) ([]store.Generation, error) {
	return scanGenerations(s.pool.Query(ctx, "SELECT record FROM generations ORDER BY id"))
}

func putGeneration(ctx context.Context, tx pgx.Tx, g store.Generation) error {
	v, err := json.Marshal(g)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, "UPDATE generations SET state = $2, record = $3 WHERE id = $1", int64(g.ID), string(g.State()), v)
	return err
}

func scanGenerations(rows pgx.Rows, err error) ([]store.Generation, error) {
	if err != nil {
		return nil, err
	}
	var out []store.Generation
	var v []byte
	_, err = pgx.ForEachRow(rows, []any{&v}, func() error {
		var g store.Generation
		if err := json.Unmarshal(v, &g); err != nil {
			return fmt.Errorf("generation record: %w", err)
		}
		out = append(out, g)
		return nil
	})
	return out, err
}

var _ store.GenerationSwitcher = (*Store)(nil)

// SwitchGeneration is ActivateGeneration conditioned on the lineage's
// active generation being replaces and on fence (see
// store.GenerationSwitcher). Its transaction first locks the fence row,
// which orders every switch (of any replica) one after the other, then
// the lineage's generations as ActivateGeneration does: of two replicas
// that name the same replaced generation, the second finds the first's
// generation active and fails with store.ErrConflict.
func (s *Store) SwitchGeneration(ctx context.Context, id, replaces uint64, fence store.Fence, at time.Time) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		last, next, err := checkFenceIn(ctx, tx, fence)
		if err != nil {
			return err
		}
		target, gens, err := lockLineage(ctx, tx, id)
		if err != nil {
			return err
		}
		var active uint64
		for _, g := range gens {
			if g.Active() {
				active = g.ID
			}
		}
		done, err := store.SwitchCheck(*target, active, replaces)
		if err != nil || done {
			return err
		}
		if err := putFenceIn(ctx, tx, last, next); err != nil {
			return err
		}
		return activateIn(ctx, tx, gens, target, at)
	})
}

// checkFenceIn locks the fence row, which orders every fenced write (of
// any replica) one after the other, and decides a write under fence
// (store.CheckFence).
func checkFenceIn(ctx context.Context, tx pgx.Tx, fence store.Fence) (last, next store.Fence, err error) {
	if fence.Token > math.MaxInt64 {
		return last, last, fmt.Errorf("fence token %d is out of range", fence.Token)
	}
	var token int64
	if err := tx.QueryRow(ctx, "SELECT holder, token FROM fences WHERE name = 'generations' FOR UPDATE").Scan(&last.Holder, &token); err != nil {
		return last, last, fmt.Errorf("lock the fence: %w", err)
	}
	last.Token = uint64(token)
	next, err = store.CheckFence(last, fence)
	return last, next, err
}

// putFenceIn remembers next when it is newer than last.
func putFenceIn(ctx context.Context, tx pgx.Tx, last, next store.Fence) error {
	if next == last {
		return nil
	}
	_, err := tx.Exec(ctx, "UPDATE fences SET holder = $1, token = $2 WHERE name = 'generations'", next.Holder, int64(next.Token))
	return err
}

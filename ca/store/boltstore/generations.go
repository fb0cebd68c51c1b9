package boltstore

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/meshca/meshca/ca/store"
)

// AddGeneration stores g under the next free ID, prepared.
func (s *Store) AddGeneration(_ context.Context, g store.Generation) (store.Generation, error) {
	g.ActivatedAt, g.RetiredAt = time.Time{}, time.Time{}
	err := s.w.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketGenerations)
		id, err := b.NextSequence()
		if err != nil {
			return err
		}
		g.ID = id
		v, err := json.Marshal(g)
		if err != nil {
			return err
		}
		return b.Put(u64(id), v)
	})
	return g, err
}

// ActivateGeneration marks id active at the given time and retires every
// other active generation of its signer lineage, in one transaction.
func (s *Store) ActivateGeneration(_ context.Context, id uint64, at time.Time) error {
	return s.w.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketGenerations)
		cur := b.Get(u64(id))
		if cur == nil {
			return fmt.Errorf("generation %d: %w", id, store.ErrNotFound)
		}
		var target store.Generation
		if err := json.Unmarshal(cur, &target); err != nil {
			return err
		}
		switch target.State() {
		case store.StateRetired:
			return fmt.Errorf("activate generation %d (retired at %s): %w", id, target.RetiredAt.UTC().Format(time.RFC3339), store.ErrRetired)
		case store.StateActive:
			return nil
		}
		return activateIn(b, id, target.Lineage(), at)
	})
}

// ListGenerations returns every generation in ID order.
func (s *Store) ListGenerations(_ context.Context) ([]store.Generation, error) {
	var out []store.Generation
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketGenerations).ForEach(func(_, v []byte) error {
			var g store.Generation
			if err := json.Unmarshal(v, &g); err != nil {
				return err
			}
			out = append(out, g)
			return nil
		})
	})
	return out, err
}

// MarkGenerationVerified records that id verified at at.
func (s *Store) MarkGenerationVerified(_ context.Context, id uint64, at time.Time) error {
	return s.w.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketGenerations)
		cur := b.Get(u64(id))
		if cur == nil {
			return fmt.Errorf("generation %d: %w", id, store.ErrNotFound)
		}
		var g store.Generation
		if err := json.Unmarshal(cur, &g); err != nil {
			return err
		}
		g.VerifiedAt = at
		v, err := json.Marshal(g)
		if err != nil {
			return err
		}
		return b.Put(u64(id), v)
	})
}

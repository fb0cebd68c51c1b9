package boltstore

import (
	"context"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/meshca/meshca/ca/store"
)

// GetAlertState returns the state stored under key or store.ErrNotFound.
func (s *Store) GetAlertState(_ context.Context, key string) (store.AlertState, error) {
	var a store.AlertState
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketAlertStates).Get([]byte(key))
		if v == nil {
			return store.ErrNotFound
		}
		return json.Unmarshal(v, &a)
	})
	return a, err
}

// PutAlertState durably stores a under a.Key.
func (s *Store) PutAlertState(_ context.Context, a store.AlertState) error {
	if err := a.Validate(); err != nil {
		return err
	}
	v, err := json.Marshal(a)
	if err != nil {
		return err
	}
	return s.w.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAlertStates).Put([]byte(a.Key), v)
	})
}

// ListAlertStates returns every alert state in key order.
func (s *Store) ListAlertStates(ctx context.Context) ([]store.AlertState, error) {
	var out []store.AlertState
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAlertStates).ForEach(func(k, v []byte) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			var a store.AlertState
			if err := json.Unmarshal(v, &a); err != nil {
				return fmt.Errorf("alert state %q: %w", k, err)
			}
			out = append(out, a)
			return nil
		})
	})
	return out, err
}

// DeleteAlertState durably removes key, if it is there.
func (s *Store) DeleteAlertState(_ context.Context, key string) error {
	return s.w.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAlertStates).Delete([]byte(key))
	})
}

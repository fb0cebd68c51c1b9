package boltstore

import (
	"context"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/meshca/meshca/ca/store"
)

// The root-rotation journal: one record under keyRootRotation in its own
// bucket. The bucket is created by the first Put, so a store written
// before root rotation existed needs no migration and older meshca
// ignores it.
var (
	bucketRootRotation = []byte("root_rotation")
	keyRootRotation    = []byte("current")
)

var _ store.RootRotations = (*Store)(nil)

// GetRootRotation returns the current root-rotation record or
// store.ErrNotFound.
func (s *Store) GetRootRotation(_ context.Context) (store.RootRotation, error) {
	var r store.RootRotation
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRootRotation)
		if b == nil {
			return store.ErrNotFound
		}
		v := b.Get(keyRootRotation)
		if v == nil {
			return store.ErrNotFound
		}
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("root rotation record: %w", err)
		}
		return nil
	})
	return r, err
}

// PutRootRotation durably replaces the current root-rotation record under
// fence (store.RootRotations): it returns after bbolt's commit, which
// fdatasyncs the file.
func (s *Store) PutRootRotation(_ context.Context, r store.RootRotation, fence store.Fence) error {
	v, err := store.EncodeRootRotation(r)
	if err != nil {
		return err
	}
	return s.w.Update(func(tx *bolt.Tx) error {
		last, next, err := checkFenceIn(tx, fence)
		if err != nil {
			return err
		}
		if err := putFenceIn(tx, last, next); err != nil {
			return err
		}
		b, err := tx.CreateBucketIfNotExists(bucketRootRotation)
		if err != nil {
			return err
		}
		return b.Put(keyRootRotation, v)
	})
}

package boltstore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/meshca/meshca/ca/store"
)

// The last accepted store.Fence lives in its own bucket, created by the
// first fenced write, so a store written before fencing existed needs no
// migration.
var (
	bucketFences = []byte("fences")
	keyFence     = []byte("generations")
)

var _ store.GenerationSwitcher = (*Store)(nil)

// SwitchGeneration is ActivateGeneration conditioned on the lineage's
// active generation being replaces and on fence (see
// store.GenerationSwitcher), in one transaction. bbolt runs one writer at
// a time, and one process holds the file.
func (s *Store) SwitchGeneration(_ context.Context, id, replaces uint64, fence store.Fence, at time.Time) error {
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
		last, next, err := checkFenceIn(tx, fence)
		if err != nil {
			return err
		}
		var active uint64
		err = b.ForEach(func(k, v []byte) error {
			var g store.Generation
			if err := json.Unmarshal(v, &g); err != nil {
				return err
			}
			if g.Active() && g.Lineage() == target.Lineage() {
				active = binary.BigEndian.Uint64(k)
			}
			return nil
		})
		if err != nil {
			return err
		}
		done, err := store.SwitchCheck(target, active, replaces)
		if err != nil || done {
			return err
		}
		if err := putFenceIn(tx, last, next); err != nil {
			return err
		}
		return activateIn(b, id, target.Lineage(), at)
	})
}

// checkFenceIn reads the last accepted fence and decides a write under
// fence (store.CheckFence), inside a read-write transaction.
func checkFenceIn(tx *bolt.Tx, fence store.Fence) (last, next store.Fence, err error) {
	if fb := tx.Bucket(bucketFences); fb != nil {
		if v := fb.Get(keyFence); v != nil {
			if err := json.Unmarshal(v, &last); err != nil {
				return last, last, fmt.Errorf("fence: %w", err)
			}
		}
	}
	next, err = store.CheckFence(last, fence)
	return last, next, err
}

// putFenceIn remembers next when it is newer than last.
func putFenceIn(tx *bolt.Tx, last, next store.Fence) error {
	if next == last {
		return nil
	}
	fb, err := tx.CreateBucketIfNotExists(bucketFences)
	if err != nil {
		return err
	}
	v, err := json.Marshal(next)
	if err != nil {
		return err
	}
	return fb.Put(keyFence, v)
}

// activateIn marks id active at at and retires the active generation of
// lineage, inside a read-write transaction.
func activateIn(b *bolt.Bucket, id uint64, lineage string, at time.Time) error {
	updates := map[uint64][]byte{}
	err := b.ForEach(func(k, v []byte) error {
		var g store.Generation
		if err := json.Unmarshal(v, &g); err != nil {
			return err
		}
		switch {
		case binary.BigEndian.Uint64(k) == id:
			g.ActivatedAt, g.RetiredAt = at, time.Time{}
		case g.Active() && g.Lineage() == lineage:
			g.RetiredAt = at
		default:
			return nil
		}
		nv, err := json.Marshal(g)
		if err != nil {
			return err
		}
		updates[binary.BigEndian.Uint64(k)] = nv
		return nil
	})
	if err != nil {
		return err
	}
	// bbolt forbids writes inside ForEach, so apply them afterwards.
	for k, v := range updates {
		if err := b.Put(u64(k), v); err != nil {
			return err
		}
	}
	return nil
}

package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"

	bolt "go.etcd.io/bbolt"

	"github.com/meshca/meshca/ca/store"
)

// The SPIFFE bundle sequences: one record per bundle name in its own
// bucket, the 8-byte big-endian number, the 32-byte digest of the content
// it numbers, then the content. The bucket is created by the first call,
// so a store written before bundle sequences existed needs no migration.
var bucketBundleSequences = []byte("bundle_sequences")

var _ store.BundleSequences = (*Store)(nil)

// BundleSequence implements store.BundleSequences: the record is read and,
// for a new digest, advanced in one fsynced transaction; bbolt runs one
// writer at a time. The same digest again is answered from a read.
func (s *Store) BundleSequence(ctx context.Context, name string, digest [32]byte, content []byte) (uint64, error) {
	if err := store.ValidateBundle(name, content); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if rec, err := s.GetBundle(ctx, name); err == nil && rec.Digest == digest {
		return rec.Sequence, nil
	}
	var n uint64
	err := s.w.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketBundleSequences)
		if err != nil {
			return err
		}
		cur, ok, err := decodeBundleRecord(b.Get([]byte(name)))
		if err != nil {
			return err
		}
		if ok && cur.Digest == digest {
			n = cur.Sequence
			return nil
		}
		if cur.Sequence == math.MaxUint64 {
			return fmt.Errorf("bundle sequence numbers of %s are exhausted", name)
		}
		n = cur.Sequence + 1
		v := make([]byte, 0, 8+32+len(content))
		v = append(append(append(v, u64(n)...), digest[:]...), content...)
		return b.Put([]byte(name), v)
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// GetBundle implements store.BundleSequences.
func (s *Store) GetBundle(_ context.Context, name string) (store.BundleRecord, error) {
	if err := store.ValidateBundleName(name); err != nil {
		return store.BundleRecord{}, err
	}
	var rec store.BundleRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketBundleSequences)
		if b == nil {
			return store.ErrNotFound
		}
		r, ok, err := decodeBundleRecord(b.Get([]byte(name)))
		if err != nil {
			return err
		}
		if !ok {
			return store.ErrNotFound
		}
		rec = r
		return nil
	})
	return rec, err
}

// decodeBundleRecord splits a record (copying the content out of bbolt's
// memory); ok is false for none.
func decodeBundleRecord(v []byte) (store.BundleRecord, bool, error) {
	var r store.BundleRecord
	if v == nil {
		return r, false, nil
	}
	if len(v) < 8+32 {
		return r, false, fmt.Errorf("bundle sequence record of %d bytes; want at least 40", len(v))
	}
	r.Sequence = binary.BigEndian.Uint64(v[:8])
	copy(r.Digest[:], v[8:40])
	r.Content = bytes.Clone(v[40:])
	return r, true, nil
}

package boltstore

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"

	bolt "go.etcd.io/bbolt"

	"github.com/meshca/meshca/ca/store"
)

// The SPIFFE bundle sequences: one record per bundle name in its own
// bucket, the 8-byte big-endian number followed by the 32-byte digest of
// the content it numbers. The bucket is created by the first call, so a
// store written before bundle sequences existed needs no migration.
var bucketBundleSequences = []byte("bundle_sequences")

var _ store.BundleSequences = (*Store)(nil)

// BundleSequence implements store.BundleSequences: the record is read and,
// for a new digest, advanced in one fsynced transaction; bbolt runs one
// writer at a time. The same digest again is answered from a read.
func (s *Store) BundleSequence(ctx context.Context, name string, digest [32]byte) (uint64, error) {
	if err := store.ValidateBundleName(name); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var n uint64
	found := false
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketBundleSequences)
		if b == nil {
			return nil
		}
		seq, d, ok, err := decodeBundleSeq(b.Get([]byte(name)))
		if err == nil && ok && d == digest {
			n, found = seq, true
		}
		return err
	})
	if err != nil || found {
		return n, err
	}
	err = s.w.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketBundleSequences)
		if err != nil {
			return err
		}
		cur, d, ok, err := decodeBundleSeq(b.Get([]byte(name)))
		if err != nil {
			return err
		}
		if ok && d == digest {
			n = cur
			return nil
		}
		if cur == math.MaxUint64 {
			return fmt.Errorf("bundle sequence numbers of %s are exhausted", name)
		}
		n = cur + 1
		return b.Put([]byte(name), append(u64(n), digest[:]...))
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// decodeBundleSeq splits a record; ok is false for none.
func decodeBundleSeq(v []byte) (seq uint64, digest [32]byte, ok bool, err error) {
	if v == nil {
		return 0, digest, false, nil
	}
	if len(v) != 8+32 {
		return 0, digest, false, fmt.Errorf("bundle sequence record of %d bytes; want 40", len(v))
	}
	copy(digest[:], v[8:])
	return binary.BigEndian.Uint64(v[:8]), digest, true, nil
}

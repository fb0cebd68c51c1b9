package boltstore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/meshca/meshca/ca/store"
)

// The issuance indexes hold keys only (the value is empty), so that a
// record costs each index one short key and no encoding:
//
//	issuances_by_identity:   identity || 0x00 || serial
//	issuances_by_generation: u64(generation) || serial
//
// A SPIFFE ID holds no 0x00, so the separator ends the identity; a read
// still checks the record's identity.

func identityKey(identity string, serial []byte) []byte {
	k := make([]byte, 0, len(identity)+1+len(serial))
	k = append(k, identity...)
	k = append(k, 0)
	return append(k, serial...)
}

func generationKey(gen uint64, serial []byte) []byte {
	k := make([]byte, 8, 8+len(serial))
	copy(k, u64(gen))
	return append(k, serial...)
}

// indexedFields are the fields of an issuance record its index keys need.
type indexedFields struct {
	Identity   string `json:"identity"`
	Generation uint64 `json:"generation"`
}

// indexKeys decodes the index keys of the stored record v under serial.
func indexKeys(serial, v []byte) (byIdentity, byGeneration []byte, err error) {
	var f indexedFields
	if err := json.Unmarshal(v, &f); err != nil {
		return nil, nil, fmt.Errorf("record %x: %w", serial, err)
	}
	return identityKey(f.Identity, serial), generationKey(f.Generation, serial), nil
}

// ListIssuancesByIdentity walks the records of identity in serial order.
func (s *Store) ListIssuancesByIdentity(ctx context.Context, identity string, fn func(store.Issuance) bool) error {
	return s.listIndexed(ctx, bucketByIdentity, identityKey(identity, nil), func(r *store.Issuance) bool { return r.Identity == identity }, fn)
}

// ListIssuancesByGeneration walks the records that generation signed, in serial order.
func (s *Store) ListIssuancesByGeneration(ctx context.Context, generation uint64, fn func(store.Issuance) bool) error {
	return s.listIndexed(ctx, bucketByGeneration, generationKey(generation, nil), func(r *store.Issuance) bool { return r.Generation == generation }, fn)
}

func (s *Store) listIndexed(ctx context.Context, index, prefix []byte, match func(*store.Issuance) bool, fn func(store.Issuance) bool) error {
	return s.db.View(func(tx *bolt.Tx) error {
		recs := tx.Bucket(bucketIssuances)
		c := tx.Bucket(index).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			serial := k[len(prefix):]
			v := recs.Get(serial)
			if v == nil {
				return fmt.Errorf("index %s names serial %x, which has no record", index, serial)
			}
			var rec store.Issuance
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("record %x: %w", serial, err)
			}
			if !match(&rec) {
				continue
			}
			if !fn(rec) {
				return nil
			}
		}
		return nil
	})
}

// migrateChunk is how many records one migration transaction indexes (a
// variable for the tests).
var migrateChunk = 10000

// buildIssuanceIndexes indexes every issuance record (schema 1 -> 2), in
// transactions of migrateChunk records. Index writes are idempotent, so a
// migration interrupted by a crash starts over at the next Open: the
// schema version is raised only after the last chunk.
func buildIssuanceIndexes(db *bolt.DB) error {
	var after []byte
	for {
		done := false
		err := db.Update(func(tx *bolt.Tx) error {
			recs := tx.Bucket(bucketIssuances)
			byID, byGen := tx.Bucket(bucketByIdentity), tx.Bucket(bucketByGeneration)
			c := recs.Cursor()
			k, v := c.First()
			if after != nil {
				k, v = c.Seek(after)
				if bytes.Equal(k, after) {
					k, v = c.Next()
				}
			}
			n := 0
			for ; k != nil && n < migrateChunk; k, v = c.Next() {
				ik, gk, err := indexKeys(k, v)
				if err != nil {
					return err
				}
				if err := byID.Put(ik, nil); err != nil {
					return err
				}
				if err := byGen.Put(gk, nil); err != nil {
					return err
				}
				after = bytes.Clone(k)
				n++
			}
			done = k == nil
			return nil
		})
		if err != nil {
			return fmt.Errorf("index the issuance records (schema 1 to 2): %w", err)
		}
		if done {
			return nil
		}
	}
}

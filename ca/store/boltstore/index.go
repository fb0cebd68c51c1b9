package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/meshca/meshca/ca/store"
)

// The issuance indexes. Both are written in the record's transaction and
// both grow at their right edge as records arrive, so a group commit
// dirties a few pages of each rather than one page per record:
//
//	issuances_by_expiry:     u64(NotAfter seconds) || serial -> u64(generation) || identity
//	issuances_by_generation: u64(generation) || serial       -> (empty)
//
// The expiry index (schema 1) already held one key per record, appended
// in time order (NotAfter is now + TTL, serials are time-ordered); schema
// 2 stores the record's generation and identity in its value. That is the
// identity index: a separate identity || serial B+tree would put each
// record of a commit in a different leaf page (identities are random
// across the key space), which more than doubled the CPU of a commit.
// The value also lets a prune delete the generation entry without
// decoding the record.

// expiryValue is the value of a record's expiry entry.
func expiryValue(generation uint64, identity string) []byte {
	v := make([]byte, 8, 8+len(identity))
	binary.BigEndian.PutUint64(v, generation)
	return append(v, identity...)
}

func generationKey(gen uint64, serial []byte) []byte {
	k := make([]byte, 8, 8+len(serial))
	binary.BigEndian.PutUint64(k, gen)
	return append(k, serial...)
}

// indexEntries builds a record's expiry key, expiry value and generation
// key in one allocation (three sub-slices that are never appended to).
func indexEntries(serial []byte, notAfter int64, generation uint64, identity string) (expKey, expVal, genKey []byte) {
	n := len(serial)
	buf := make([]byte, 8+n+8+n+8+len(identity))
	binary.BigEndian.PutUint64(buf, uint64(notAfter))
	copy(buf[8:], serial)
	binary.BigEndian.PutUint64(buf[8+n:], generation)
	copy(buf[16+n:], serial)
	binary.BigEndian.PutUint64(buf[16+2*n:], generation)
	copy(buf[24+2*n:], identity)
	return buf[: 8+n : 8+n], buf[16+2*n:], buf[8+n : 16+2*n : 16+2*n]
}

// indexedFields are the fields of an issuance record its index entries need.
type indexedFields struct {
	Identity   string `json:"identity"`
	Generation uint64 `json:"generation"`
}

// scanChunk bounds how many index entries one read transaction of an
// index walk visits, and listChunk how many records it decodes (variables
// for the tests).
var scanChunk = 1 << 16

// ListIssuancesByIdentity calls fn for every record of identity, expired
// or not, in NotAfter order. Its cost is a scan of the whole expiry index,
// O(records in the store): the walk reads each entry's key and compares
// its value's identity bytes, decoding no JSON, and loads only the
// matching records: about 0.1 s for 1M records, 2k of them matching, on
// a 2-core machine (BenchmarkListIssuancesByIdentity; decoding every
// record took 7.5 s). The store holds the records of one TTL plus the
// retention, so that is what a revocation by identity reads; the price
// keeps the issuance path free of a randomly ordered identity index (see
// the top of this file). The walk reads in chunks and calls fn outside any
// transaction, like ListRevocations.
func (s *Store) ListIssuancesByIdentity(ctx context.Context, identity string, fn func(store.Issuance) bool) error {
	id := []byte(identity)
	return s.walkIndex(ctx, bucketExpiry, nil,
		func(k, v []byte) ([]byte, bool, error) {
			if len(v) < 8 || len(k) <= 8 {
				return nil, false, fmt.Errorf("expiry index entry %x has no index value", k)
			}
			if !bytes.Equal(v[8:], id) {
				return nil, true, nil
			}
			return k[8:], true, nil
		},
		func(r *store.Issuance) error {
			if r.Identity != identity {
				return fmt.Errorf("expiry index names identity %q for record %s of %q", identity, r.Serial, r.Identity)
			}
			return nil
		}, fn)
}

// ListIssuancesByGeneration calls fn for every record that generation
// signed, in serial order: a prefix walk of the generation index.
func (s *Store) ListIssuancesByGeneration(ctx context.Context, generation uint64, fn func(store.Issuance) bool) error {
	prefix := generationKey(generation, nil)
	return s.walkIndex(ctx, bucketByGeneration, prefix,
		func(k, _ []byte) ([]byte, bool, error) {
			if !bytes.HasPrefix(k, prefix) {
				return nil, false, nil
			}
			return k[8:], true, nil
		},
		func(r *store.Issuance) error {
			if r.Generation != generation {
				return fmt.Errorf("generation index names generation %d for record %s of generation %d", generation, r.Serial, r.Generation)
			}
			return nil
		}, fn)
}

// walkIndex walks index from the key from on. visit says, for each entry,
// which serial's record to load (nil: none) and whether the walk goes on;
// check verifies a loaded record against its index entry. It reads in
// chunks (scanChunk entries, listChunk records) and calls fn outside any
// transaction: a long read transaction would block a commit that grows
// the file, and fn may write to the store.
func (s *Store) walkIndex(ctx context.Context, index, from []byte,
	visit func(k, v []byte) (serial []byte, more bool, err error),
	check func(*store.Issuance) error, fn func(store.Issuance) bool,
) error {
	if err := s.writes.flush(ctx); err != nil {
		return err
	}
	var after []byte // the last entry visited
	buf := make([]store.Issuance, 0, min(listChunk, 64))
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		buf = buf[:0]
		more := true
		err := s.db.View(func(tx *bolt.Tx) error {
			recs := tx.Bucket(bucketIssuances)
			c := tx.Bucket(index).Cursor()
			var k, v []byte
			switch {
			case after != nil:
				if k, v = c.Seek(after); bytes.Equal(k, after) {
					k, v = c.Next()
				}
			case from != nil:
				k, v = c.Seek(from)
			default:
				k, v = c.First()
			}
			for n := 0; ; k, v = c.Next() {
				if k == nil {
					more = false
					return nil
				}
				if n == scanChunk || len(buf) == listChunk {
					return nil
				}
				n++
				serial, goOn, err := visit(k, v)
				if err != nil {
					return err
				}
				if !goOn {
					more = false
					return nil
				}
				after = append(after[:0], k...)
				if serial == nil {
					continue
				}
				rv := recs.Get(serial)
				if rv == nil {
					return fmt.Errorf("index %s names serial %x, which has no record", index, serial)
				}
				var rec store.Issuance
				if err := json.Unmarshal(rv, &rec); err != nil {
					return fmt.Errorf("record %x: %w", serial, err)
				}
				if err := check(&rec); err != nil {
					return err
				}
				buf = append(buf, rec)
			}
		})
		if err != nil {
			return err
		}
		for _, r := range buf {
			if !fn(r) {
				return nil
			}
		}
		if !more {
			return nil
		}
	}
}

// migrateChunk is how many records one migration transaction indexes (a
// variable for the tests).
var migrateChunk = 10000

// buildIssuanceIndexes moves a schema 1 store to schema 2: it walks the
// expiry index in transactions of migrateChunk entries, stores each
// record's generation and identity in its expiry entry and adds the
// record to the generation index. An entry whose record is missing names
// nothing and is deleted (schema 1 wrote and pruned both in one
// transaction, so none is expected). The writes are idempotent, so a
// migration interrupted by a crash starts over at the next Open: the
// schema version is raised only after the last chunk.
func buildIssuanceIndexes(db *bolt.DB) error {
	type update struct{ key, value []byte } // value nil: delete key
	var after []byte
	for {
		done := false
		err := db.Update(func(tx *bolt.Tx) error {
			recs, exp, byGen := tx.Bucket(bucketIssuances), tx.Bucket(bucketExpiry), tx.Bucket(bucketByGeneration)
			c := exp.Cursor()
			k, _ := c.First()
			if after != nil {
				if k, _ = c.Seek(after); bytes.Equal(k, after) {
					k, _ = c.Next()
				}
			}
			// The expiry entries are rewritten after the walk: bbolt's
			// cursor is not valid across writes to its bucket.
			var updates []update
			for ; k != nil && len(updates) < migrateChunk; k, _ = c.Next() {
				key := bytes.Clone(k)
				after = key
				if len(key) <= 8 {
					return fmt.Errorf("expiry index entry %x is too short", key)
				}
				rv := recs.Get(key[8:])
				if rv == nil {
					updates = append(updates, update{key: key})
					continue
				}
				var f indexedFields
				if err := json.Unmarshal(rv, &f); err != nil {
					return fmt.Errorf("record %x: %w", key[8:], err)
				}
				updates = append(updates, update{key, expiryValue(f.Generation, f.Identity)})
				if err := byGen.Put(generationKey(f.Generation, key[8:]), nil); err != nil {
					return err
				}
			}
			done = k == nil
			for _, u := range updates {
				var err error
				if u.value == nil {
					err = exp.Delete(u.key)
				} else {
					err = exp.Put(u.key, u.value)
				}
				if err != nil {
					return err
				}
			}
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

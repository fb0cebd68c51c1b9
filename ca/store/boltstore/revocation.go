package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/meshca/meshca/ca/store"
)

// Revocations live in three buckets: the records by serial (JSON), the
// serial of each by Seq (the order of ListRevocations, which delta CRLs
// follow, RFC 5280 section 5.2.4), and an expiry index of those whose
// NotAfter is known (PruneRevocations). CRL numbers are a counter per scope.

var errSeqExhausted = errors.New("revocation sequence exhausted")

// revocationExpiryKey orders by NotAfter, exactly: seconds (sign bit
// flipped, so that times before 1970 sort first) and nanoseconds, then
// the serial.
func revocationExpiryKey(notAfter time.Time, serial []byte) []byte {
	k := make([]byte, 12, 12+len(serial))
	binary.BigEndian.PutUint64(k, uint64(notAfter.Unix())^(1<<63))
	binary.BigEndian.PutUint32(k[8:], uint32(notAfter.Nanosecond()))
	return append(k, serial...)
}

// Revoke stores recs in one fsynced transaction (see store.Revocations).
// Every record is validated first: one bad record refuses the whole batch
// and nothing is stored.
func (s *Store) Revoke(ctx context.Context, recs []store.Revocation) ([]store.Revocation, error) {
	keys := make([][]byte, len(recs))
	for i, r := range recs {
		if err := store.ValidateRevocation(r); err != nil {
			return nil, fmt.Errorf("revocation %d of %d: %w", i+1, len(recs), err)
		}
		keys[i], _ = serialKey(r.Serial) // valid: ValidateSerial checked it
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return []store.Revocation{}, nil
	}
	out := make([]store.Revocation, len(recs))
	err := s.w.Update(func(tx *bolt.Tx) error {
		b, bySeq, byExpiry := tx.Bucket(bucketRevocations), tx.Bucket(bucketRevocationSeq), tx.Bucket(bucketRevocationExpiry)
		first := make(map[string]int, len(recs)) // serial -> its first index in recs
		for i, r := range recs {
			if j, ok := first[r.Serial]; ok {
				out[i] = out[j] // a duplicate inside the batch: one record
				out[i].Existing = true
				continue
			}
			first[r.Serial] = i
			if v := b.Get(keys[i]); v != nil {
				// Already revoked: the original record stands.
				if err := json.Unmarshal(v, &out[i]); err != nil {
					return fmt.Errorf("revocation %s: %w", r.Serial, err)
				}
				out[i].Existing = true
				continue
			}
			seq, err := b.NextSequence()
			if err != nil {
				return err
			}
			if seq == math.MaxUint64 {
				return errSeqExhausted
			}
			r.Seq = seq
			v, err := json.Marshal(r)
			if err != nil {
				return err
			}
			if err := b.Put(keys[i], v); err != nil {
				return err
			}
			if err := bySeq.Put(u64(seq), keys[i]); err != nil {
				return err
			}
			if !r.NotAfter.IsZero() {
				if err := byExpiry.Put(revocationExpiryKey(r.NotAfter, keys[i]), nil); err != nil {
					return err
				}
			}
			// Return what a read returns (times without monotonic readings).
			if err := json.Unmarshal(v, &out[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// GetRevocation returns the revocation of serial or store.ErrNotFound.
func (s *Store) GetRevocation(_ context.Context, serial string) (store.Revocation, error) {
	if err := store.ValidateSerial(serial); err != nil {
		return store.Revocation{}, err
	}
	k, _ := serialKey(serial)
	var r store.Revocation
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketRevocations).Get(k)
		if v == nil {
			return store.ErrNotFound
		}
		return json.Unmarshal(v, &r)
	})
	return r, err
}

// listChunk is how many revocations ListRevocations reads per read
// transaction (a variable for the tests).
var listChunk = 1024

// ListRevocations walks the revocations with Seq > since in Seq order, up
// to the last Seq when it starts. It reads them in chunks and calls fn
// outside any transaction: a CRL of a million entries is streamed while
// it is encoded, and a long read transaction would keep bbolt from
// reusing freed pages and block a commit that grows the file (remapping
// waits for every read transaction).
func (s *Store) ListRevocations(ctx context.Context, since uint64, fn func(store.Revocation) bool) error {
	last, err := s.LastRevocationSeq(ctx)
	if err != nil {
		return err
	}
	buf := make([]store.Revocation, 0, min(listChunk, 64))
	for since < last {
		if err := ctx.Err(); err != nil {
			return err
		}
		buf = buf[:0]
		err := s.db.View(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketRevocations)
			c := tx.Bucket(bucketRevocationSeq).Cursor()
			for k, serial := c.Seek(u64(since + 1)); k != nil && len(buf) < listChunk; k, serial = c.Next() {
				if binary.BigEndian.Uint64(k) > last {
					break
				}
				v := b.Get(serial)
				if v == nil {
					return fmt.Errorf("revocation Seq %d names serial %x, which has no record", binary.BigEndian.Uint64(k), serial)
				}
				var r store.Revocation
				if err := json.Unmarshal(v, &r); err != nil {
					return fmt.Errorf("revocation %x: %w", serial, err)
				}
				buf = append(buf, r)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if len(buf) == 0 {
			return nil
		}
		for _, r := range buf {
			if !fn(r) {
				return nil
			}
		}
		since = buf[len(buf)-1].Seq
	}
	return nil
}

// LastRevocationSeq is the highest Seq ever assigned (pruning keeps it).
func (s *Store) LastRevocationSeq(_ context.Context) (uint64, error) {
	var n uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketRevocations).Sequence()
		return nil
	})
	return n, err
}

// PruneRevocations deletes the revocations whose NotAfter is known and
// before cutoff, in chunks like PruneIssuances. A revocation without
// NotAfter is not in the expiry index, so it is never pruned.
func (s *Store) PruneRevocations(ctx context.Context, cutoff time.Time) (int, error) {
	const chunk = 1000
	limit := revocationExpiryKey(cutoff, nil)
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n := 0
		err := s.w.Update(func(tx *bolt.Tx) error {
			b, bySeq := tx.Bucket(bucketRevocations), tx.Bucket(bucketRevocationSeq)
			c := tx.Bucket(bucketRevocationExpiry).Cursor()
			for k, _ := c.First(); k != nil && n < chunk; k, _ = c.First() {
				if bytes.Compare(k[:12], limit) >= 0 {
					break
				}
				serial := k[12:]
				if v := b.Get(serial); v != nil {
					var r struct {
						Seq uint64 `json:"seq"`
					}
					if err := json.Unmarshal(v, &r); err != nil {
						return fmt.Errorf("revocation %x: %w", serial, err)
					}
					if bytes.Equal(bySeq.Get(u64(r.Seq)), serial) {
						if err := bySeq.Delete(u64(r.Seq)); err != nil {
							return err
						}
					}
					if err := b.Delete(serial); err != nil {
						return err
					}
					n++
				}
				if err := c.Delete(); err != nil {
					return err
				}
			}
			return nil
		})
		total += n
		if err != nil || n < chunk {
			return total, err
		}
	}
}

// NextCRLNumber durably allocates the next CRLNumber of scope (RFC 5280
// section 5.2.3): the counter is read and advanced in one fsynced
// transaction, and bbolt runs one writer at a time, so no two callers (nor
// two runs of meshca) get the same number. The cut's Seq is read in the
// same transaction, after every revocation committed before it.
func (s *Store) NextCRLNumber(ctx context.Context, scope string) (store.CRLCut, error) {
	if err := store.ValidateCRLScope(scope); err != nil {
		return store.CRLCut{}, err
	}
	if err := ctx.Err(); err != nil {
		return store.CRLCut{}, err
	}
	var cut store.CRLCut
	err := s.w.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCRLNumbers)
		var cur uint64
		if v := b.Get([]byte(scope)); v != nil {
			cur = binary.BigEndian.Uint64(v)
		}
		if cur == math.MaxUint64 {
			return fmt.Errorf("CRL numbers of scope %s are exhausted", scope)
		}
		cut = store.CRLCut{Number: cur + 1, Seq: tx.Bucket(bucketRevocations).Sequence()}
		return b.Put([]byte(scope), u64(cut.Number))
	})
	if err != nil {
		return store.CRLCut{}, err
	}
	return cut, nil
}

package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// expiryEntry is one entry of the expiry index as ListExpiries hands it out.
type expiryEntry struct {
	notAfter int64
	identity string
}

// ListExpiries walks the expiry index from from on: it reads each
// entry's key (NotAfter) and value (identity) and decodes no record, in
// read transactions of scanChunk entries, and calls fn outside them.
func (s *Store) ListExpiries(ctx context.Context, from time.Time, fn func(notAfter time.Time, identity string) bool) error {
	var after []byte
	start := u64(uint64(max(from.Unix(), 0)))
	if err := s.writes.flush(ctx); err != nil {
		return err
	}
	buf := make([]expiryEntry, 0, min(scanChunk, 4096))
	// Identities repeat (one per renewal): each distinct one is allocated
	// once per walk (a map lookup by string(bytes) does not allocate).
	intern := map[string]string{}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		buf = buf[:0]
		more := true
		err := s.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketExpiry).Cursor()
			var k, v []byte
			if after != nil {
				if k, v = c.Seek(after); bytes.Equal(k, after) {
					k, v = c.Next()
				}
			} else {
				k, v = c.Seek(start)
			}
			for ; ; k, v = c.Next() {
				if k == nil {
					more = false
					return nil
				}
				if len(buf) == scanChunk {
					return nil
				}
				if len(k) <= 8 || len(v) < 8 {
					return fmt.Errorf("expiry index entry %x has no index value", k)
				}
				after = append(after[:0], k...)
				id, ok := intern[string(v[8:])]
				if !ok {
					id = string(v[8:])
					intern[id] = id
				}
				buf = append(buf, expiryEntry{int64(binary.BigEndian.Uint64(k)), id})
			}
		})
		if err != nil {
			return err
		}
		for _, e := range buf {
			if !fn(time.Unix(e.notAfter, 0).UTC(), e.identity) {
				return nil
			}
		}
		if !more {
			return nil
		}
	}
}

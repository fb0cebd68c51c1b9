package pgstore

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/meshca/meshca/ca/store"
)

// listChunk is how many rows one query of a walk reads; the walk calls fn
// between queries, outside any transaction, since fn may write to the
// store (a variable for the tests).
var listChunk = 1024

// pruneChunk is how many rows one prune statement deletes, so that a large
// prune never holds many row locks for long.
const pruneChunk = 1000

func serialKey(serial string) ([]byte, error) {
	k, err := hex.DecodeString(serial)
	if err != nil || len(k) == 0 {
		return nil, fmt.Errorf("serial %q is not hex", serial)
	}
	return k, nil
}

// PutIssuance durably stores rec: it returns after its transaction
// committed. The same record again is a no-op; a different one under a
// recorded serial is refused with ErrDuplicateSerial.
func (s *Store) PutIssuance(ctx context.Context, rec store.Issuance) error {
	k, err := serialKey(rec.Serial)
	if err != nil {
		return err
	}
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	for range 3 {
		tag, err := s.pool.Exec(ctx, `INSERT INTO issuances (serial, identity, generation, not_after, record)
			VALUES ($1, $2, $3, $4, $5) ON CONFLICT (serial) DO NOTHING`,
			k, rec.Identity, int64(rec.Generation), rec.NotAfter.Unix(), v)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 1 {
			return nil
		}
		var old []byte
		err = s.pool.QueryRow(ctx, "SELECT record FROM issuances WHERE serial = $1", k).Scan(&old)
		if errors.Is(err, pgx.ErrNoRows) {
			continue // pruned between the two statements: insert again
		}
		if err != nil {
			return err
		}
		if !bytes.Equal(old, v) {
			return ErrDuplicateSerial
		}
		return nil
	}
	return fmt.Errorf("record %s: the serial was recorded and pruned concurrently three times", rec.Serial)
}

// GetIssuance returns the record for serial or store.ErrNotFound.
func (s *Store) GetIssuance(ctx context.Context, serial string) (store.Issuance, error) {
	k, err := serialKey(serial)
	if err != nil {
		return store.Issuance{}, err
	}
	var v []byte
	err = s.pool.QueryRow(ctx, "SELECT record FROM issuances WHERE serial = $1", k).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Issuance{}, store.ErrNotFound
	}
	if err != nil {
		return store.Issuance{}, err
	}
	var rec store.Issuance
	if err := json.Unmarshal(v, &rec); err != nil {
		return store.Issuance{}, fmt.Errorf("record %s: %w", serial, err)
	}
	return rec, nil
}

// ListIssuances walks the records in serial order (the octets', as in
// bbolt).
func (s *Store) ListIssuances(ctx context.Context, fn func(store.Issuance) bool) error {
	return s.walkIssuances(ctx, "SELECT serial, record FROM issuances WHERE serial > $1 ORDER BY serial LIMIT $2", nil, fn)
}

// ListIssuancesByIdentity calls fn for every record of identity, expired
// or not, in serial order: a walk of the (identity, serial) index.
func (s *Store) ListIssuancesByIdentity(ctx context.Context, identity string, fn func(store.Issuance) bool) error {
	return s.walkIssuances(ctx, "SELECT serial, record FROM issuances WHERE identity = $3 AND serial > $1 ORDER BY serial LIMIT $2",
		[]any{identity}, fn)
}

// ListIssuancesByGeneration calls fn for every record that generation
// signed, in serial order: a walk of the (generation, serial) index.
func (s *Store) ListIssuancesByGeneration(ctx context.Context, generation uint64, fn func(store.Issuance) bool) error {
	return s.walkIssuances(ctx, "SELECT serial, record FROM issuances WHERE generation = $3 AND serial > $1 ORDER BY serial LIMIT $2",
		[]any{int64(generation)}, fn)
}

// walkIssuances pages through query ($1 the last serial seen, $2 the page
// size, $3... args) and calls fn for each record between pages.
func (s *Store) walkIssuances(ctx context.Context, query string, args []any, fn func(store.Issuance) bool) error {
	after := []byte{}
	for {
		rows, err := s.pool.Query(ctx, query, append([]any{after, listChunk}, args...)...)
		if err != nil {
			return err
		}
		var page []store.Issuance
		var k, v []byte
		_, err = pgx.ForEachRow(rows, []any{&k, &v}, func() error {
			var rec store.Issuance
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("record %x: %w", k, err)
			}
			page = append(page, rec)
			after = bytes.Clone(k)
			return nil
		})
		if err != nil {
			return err
		}
		for _, r := range page {
			if !fn(r) {
				return nil
			}
		}
		if len(page) < listChunk {
			return nil
		}
	}
}

// ListExpiries walks the (not_after, serial) index from from on, reading
// the NotAfter and identity columns and decoding no record.
func (s *Store) ListExpiries(ctx context.Context, from time.Time, fn func(notAfter time.Time, identity string) bool) error {
	type entry struct {
		notAfter int64
		identity string
	}
	lastAt, lastSerial := max(from.Unix(), 0), []byte{}
	first := true
	for {
		q := "SELECT not_after, serial, identity FROM issuances WHERE (not_after, serial) > ($1, $2) ORDER BY not_after, serial LIMIT $3"
		if first {
			q = "SELECT not_after, serial, identity FROM issuances WHERE not_after >= $1 AND $2::bytea IS NOT NULL ORDER BY not_after, serial LIMIT $3"
		}
		rows, err := s.pool.Query(ctx, q, lastAt, lastSerial, listChunk)
		if err != nil {
			return err
		}
		var page []entry
		var at int64
		var serial []byte
		var id string
		_, err = pgx.ForEachRow(rows, []any{&at, &serial, &id}, func() error {
			page = append(page, entry{at, id})
			lastAt, lastSerial = at, bytes.Clone(serial)
			return nil
		})
		if err != nil {
			return err
		}
		first = false
		for _, e := range page {
			if !fn(time.Unix(e.notAfter, 0).UTC(), e.identity) {
				return nil
			}
		}
		if len(page) < listChunk {
			return nil
		}
	}
}

// PruneIssuances deletes the records whose NotAfter (in whole seconds, as
// bbolt's expiry index keeps it) is before cutoff's, in chunks.
func (s *Store) PruneIssuances(ctx context.Context, cutoff time.Time) (int, error) {
	total := 0
	for {
		tag, err := s.pool.Exec(ctx, `DELETE FROM issuances WHERE serial IN (
			SELECT serial FROM issuances WHERE not_after < $1 ORDER BY not_after LIMIT $2)`, cutoff.Unix(), pruneChunk)
		if err != nil {
			return total, err
		}
		n := int(tag.RowsAffected())
		total += n
		if n < pruneChunk {
			return total, nil
		}
	}
}

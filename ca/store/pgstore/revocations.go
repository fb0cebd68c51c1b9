package pgstore

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/meshca/meshca/ca/store"
)

// Revoke stores recs in one transaction (see store.Revocations). It first
// locks the revocation_seq counter row, so concurrent revocations, from
// this replica or another, commit one after the other, in Seq order: a
// delta CRL that lists the revocations after a Seq never misses one that
// commits later with a lower Seq. Every record is validated first; one bad
// record refuses the whole batch and nothing is stored.
func (s *Store) Revoke(ctx context.Context, recs []store.Revocation) ([]store.Revocation, error) {
	keys := make([][]byte, len(recs))
	for i, r := range recs {
		if err := store.ValidateRevocation(r); err != nil {
			return nil, fmt.Errorf("revocation %d of %d: %w", i+1, len(recs), err)
		}
		keys[i], _ = hex.DecodeString(r.Serial) // valid: ValidateSerial checked it
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return []store.Revocation{}, nil
	}
	var out []store.Revocation
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		out = make([]store.Revocation, len(recs)) // a retried transaction starts over
		var seq int64
		if err := tx.QueryRow(ctx, "SELECT value FROM counters WHERE name = 'revocation_seq' FOR UPDATE").Scan(&seq); err != nil {
			return fmt.Errorf("lock the revocation sequence: %w", err)
		}
		existing := map[string][]byte{}
		rows, err := tx.Query(ctx, "SELECT serial, record FROM revocations WHERE serial = ANY($1)", keys)
		if err != nil {
			return err
		}
		var k, v []byte
		if _, err := pgx.ForEachRow(rows, []any{&k, &v}, func() error {
			existing[string(k)] = v
			return nil
		}); err != nil {
			return err
		}
		first := make(map[string]int, len(recs)) // serial -> its first index in recs
		batch := &pgx.Batch{}
		for i, r := range recs {
			if j, ok := first[r.Serial]; ok {
				out[i] = out[j] // a duplicate inside the batch: one record
				out[i].Existing = true
				continue
			}
			first[r.Serial] = i
			if v, ok := existing[string(keys[i])]; ok {
				// Already revoked: the original record stands.
				if err := json.Unmarshal(v, &out[i]); err != nil {
					return fmt.Errorf("revocation %s: %w", r.Serial, err)
				}
				out[i].Existing = true
				continue
			}
			if seq == math.MaxInt64 {
				return errors.New("revocation sequence exhausted")
			}
			seq++
			r.Seq = uint64(seq)
			v, err := json.Marshal(r)
			if err != nil {
				return err
			}
			var naS *int64
			var naNS *int32
			if !r.NotAfter.IsZero() {
				sec, ns := r.NotAfter.Unix(), int32(r.NotAfter.Nanosecond())
				naS, naNS = &sec, &ns
			}
			batch.Queue("INSERT INTO revocations (serial, seq, not_after_s, not_after_ns, record) VALUES ($1, $2, $3, $4, $5)",
				keys[i], seq, naS, naNS, v)
			// Return what a read returns (times without monotonic readings).
			if err := json.Unmarshal(v, &out[i]); err != nil {
				return err
			}
		}
		batch.Queue("UPDATE counters SET value = $1 WHERE name = 'revocation_seq'", seq)
		return tx.SendBatch(ctx, batch).Close()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// GetRevocation returns the revocation of serial or store.ErrNotFound.
func (s *Store) GetRevocation(ctx context.Context, serial string) (store.Revocation, error) {
	if err := store.ValidateSerial(serial); err != nil {
		return store.Revocation{}, err
	}
	k, _ := hex.DecodeString(serial)
	var v []byte
	err := s.pool.QueryRow(ctx, "SELECT record FROM revocations WHERE serial = $1", k).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Revocation{}, store.ErrNotFound
	}
	if err != nil {
		return store.Revocation{}, err
	}
	var r store.Revocation
	if err := json.Unmarshal(v, &r); err != nil {
		return store.Revocation{}, fmt.Errorf("revocation %s: %w", serial, err)
	}
	return r, nil
}

// ListRevocations walks the revocations with Seq > since in Seq order, up
// to the last Seq when it starts, a page at a time; fn is called between
// queries, so a CRL of a million entries is streamed while it is encoded.
func (s *Store) ListRevocations(ctx context.Context, since uint64, fn func(store.Revocation) bool) error {
	last, err := s.LastRevocationSeq(ctx)
	if err != nil {
		return err
	}
	for since < last {
		rows, err := s.pool.Query(ctx, "SELECT record FROM revocations WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3",
			int64(since), int64(last), listChunk)
		if err != nil {
			return err
		}
		var page []store.Revocation
		var v []byte
		if _, err := pgx.ForEachRow(rows, []any{&v}, func() error {
			var r store.Revocation
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("revocation record: %w", err)
			}
			page = append(page, r)
			return nil
		}); err != nil {
			return err
		}
		if len(page) == 0 {
			return nil
		}
		for _, r := range page {
			if !fn(r) {
				return nil
			}
		}
		since = page[len(page)-1].Seq
	}
	return nil
}

// LastRevocationSeq is the highest Seq committed (pruning keeps it).
func (s *Store) LastRevocationSeq(ctx context.Context) (uint64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, "SELECT value FROM counters WHERE name = 'revocation_seq'").Scan(&n); err != nil {
		return 0, err
	}
	return uint64(n), nil
}

// PruneRevocations deletes the revocations whose NotAfter is known and
// before cutoff (compared to the nanosecond), in chunks.
func (s *Store) PruneRevocations(ctx context.Context, cutoff time.Time) (int, error) {
	total := 0
	for {
		tag, err := s.pool.Exec(ctx, `DELETE FROM revocations WHERE serial IN (
			SELECT serial FROM revocations WHERE not_after_s IS NOT NULL AND (not_after_s, not_after_ns) < ($1, $2)
			ORDER BY not_after_s, not_after_ns LIMIT $3)`, cutoff.Unix(), int32(cutoff.Nanosecond()), pruneChunk)
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

// NextCRLNumber durably allocates the next CRLNumber of scope (RFC 5280
// section 5.2.3): one transaction inserts or advances the scope's row and
// commits. The row lock makes concurrent callers, on any replica, wait
// for each other, so no two get the same number, and a number is handed
// out only once its commit is durable. The cut's Seq is read by a second
// statement of that transaction, whose snapshot (READ COMMITTED,
// requireReadCommitted) is taken once the row lock is held: after the
// previous allocation of the scope committed, so a greater number never
// gets a smaller Seq. (Read in the first statement, its snapshot would
// predate the wait for the lock.) Revoke advances the counter in the
// transaction that stores the records, so every Seq up to the one read is
// committed. Both statements go in one batch, an implicit transaction of
// one round trip, so the row lock is not held while the client and the
// network are between statements.
func (s *Store) NextCRLNumber(ctx context.Context, scope string) (store.CRLCut, error) {
	if err := store.ValidateCRLScope(scope); err != nil {
		return store.CRLCut{}, err
	}
	var n, seq int64
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO crl_numbers AS c (scope, last) VALUES ($1, 1)
		ON CONFLICT (scope) DO UPDATE SET last = c.last + 1 RETURNING last`, scope).QueryRow(func(r pgx.Row) error { return r.Scan(&n) })
	b.Queue("SELECT value FROM counters WHERE name = 'revocation_seq'").QueryRow(func(r pgx.Row) error { return r.Scan(&seq) })
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return store.CRLCut{}, fmt.Errorf("allocate a CRL number of scope %s: %w", scope, err)
	}
	return store.CRLCut{Number: uint64(n), Seq: uint64(seq)}, nil
}

package pgstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/meshca/meshca/ca/store"
)

var _ store.BundleSequences = (*Store)(nil)

// BundleSequence implements store.BundleSequences. The same digest as the
// stored one is answered from a read; otherwise one transaction locks the
// name's row (SELECT ... FOR UPDATE, or the INSERT's conflict on a
// concurrent first call), compares again and advances it, so that
// replicas racing with the same new content get one number and no two
// contents share one.
func (s *Store) BundleSequence(ctx context.Context, name string, digest [32]byte, content []byte) (uint64, error) {
	if err := store.ValidateBundle(name, content); err != nil {
		return 0, err
	}
	if content == nil {
		content = []byte{}
	}
	var seq int64
	var cur []byte
	err := s.pool.QueryRow(ctx, `SELECT seq, digest FROM bundle_sequences WHERE name = $1`, name).Scan(&seq, &cur)
	switch {
	case err == nil && string(cur) == string(digest[:]):
		return uint64(seq), nil
	case err != nil && !errors.Is(err, pgx.ErrNoRows):
		return 0, fmt.Errorf("read the bundle sequence of %s: %w", name, err)
	}
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		// A first call inserts the row; a concurrent first call waits on
		// the insert and does nothing, then both lock the row below.
		if _, err := tx.Exec(ctx, `INSERT INTO bundle_sequences (name, seq, digest, content) VALUES ($1, 1, $2, $3)
			ON CONFLICT (name) DO NOTHING`, name, digest[:], content); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT seq, digest FROM bundle_sequences WHERE name = $1 FOR UPDATE`, name).Scan(&seq, &cur); err != nil {
			return err
		}
		if string(cur) == string(digest[:]) {
			return nil
		}
		return tx.QueryRow(ctx, `UPDATE bundle_sequences SET seq = seq + 1, digest = $2, content = $3 WHERE name = $1 RETURNING seq`,
			name, digest[:], content).Scan(&seq)
	})
	if err != nil {
		return 0, fmt.Errorf("advance the bundle sequence of %s: %w", name, err)
	}
	return uint64(seq), nil
}

// GetBundle implements store.BundleSequences.
func (s *Store) GetBundle(ctx context.Context, name string) (store.BundleRecord, error) {
	if err := store.ValidateBundleName(name); err != nil {
		return store.BundleRecord{}, err
	}
	var seq int64
	var digest []byte
	var rec store.BundleRecord
	err := s.pool.QueryRow(ctx, `SELECT seq, digest, content FROM bundle_sequences WHERE name = $1`, name).Scan(&seq, &digest, &rec.Content)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.BundleRecord{}, store.ErrNotFound
	}
	if err != nil {
		return store.BundleRecord{}, fmt.Errorf("read the bundle of %s: %w", name, err)
	}
	if len(digest) != len(rec.Digest) {
		return store.BundleRecord{}, fmt.Errorf("the bundle of %s has a digest of %d bytes", name, len(digest))
	}
	rec.Sequence = uint64(seq)
	copy(rec.Digest[:], digest)
	return rec, nil
}

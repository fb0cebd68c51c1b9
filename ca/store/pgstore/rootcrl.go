package pgstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/meshca/meshca/ca/store"
)

var _ store.RootCRLs = (*Store)(nil)

// KeepRootCRL implements store.RootCRLs: one transaction inserts the
// issuer's row, or locks it (the conflict of INSERT ... ON CONFLICT DO
// UPDATE) and replaces it only when store.RootCRLReplaces holds and the
// CRL differs, then returns the row, so that replicas racing with two
// CRLs keep the greater.
func (s *Store) KeepRootCRL(ctx context.Context, issuer string, c store.RootCRL) ([]byte, error) {
	num, replaces, err := store.ValidateRootCRL(issuer, c)
	if err != nil {
		return nil, err
	}
	var kept []byte
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		// bytea compares byte by byte; the numbers are all 21 bytes.
		if _, err := tx.Exec(ctx, `INSERT INTO root_crls (issuer, number, der) VALUES ($1, $2, $3)
			ON CONFLICT (issuer) DO UPDATE SET number = excluded.number, der = excluded.der
			WHERE root_crls.der IS DISTINCT FROM excluded.der AND (root_crls.number = $4::bytea
			   OR (excluded.number IS NULL AND root_crls.number IS NULL)
			   OR (excluded.number IS NOT NULL AND (root_crls.number IS NULL OR excluded.number >= root_crls.number)))`,
			issuer, num, c.DER, replaces); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT der FROM root_crls WHERE issuer = $1`, issuer).Scan(&kept)
	})
	if err != nil {
		return nil, fmt.Errorf("keep the root CRL of %s: %w", issuer, err)
	}
	return kept, nil
}

// GetRootCRL implements store.RootCRLs.
func (s *Store) GetRootCRL(ctx context.Context, issuer string) ([]byte, error) {
	if err := store.ValidateBundleName(issuer); err != nil {
		return nil, fmt.Errorf("root CRL issuer key: %w", err)
	}
	var der []byte
	err := s.pool.QueryRow(ctx, `SELECT der FROM root_crls WHERE issuer = $1`, issuer).Scan(&der)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read the root CRL of %s: %w", issuer, err)
	}
	return der, nil
}

package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/meshca/meshca/ca/store"
)

// GetAlertState returns the state stored under key or store.ErrNotFound.
func (s *Store) GetAlertState(ctx context.Context, key string) (store.AlertState, error) {
	var v []byte
	err := s.pool.QueryRow(ctx, "SELECT record FROM alert_states WHERE key = $1", []byte(key)).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.AlertState{}, store.ErrNotFound
	}
	if err != nil {
		return store.AlertState{}, err
	}
	var a store.AlertState
	if err := json.Unmarshal(v, &a); err != nil {
		return store.AlertState{}, fmt.Errorf("alert state: %w", err)
	}
	return a, nil
}

// PutAlertState durably stores a under a.Key.
func (s *Store) PutAlertState(ctx context.Context, a store.AlertState) error {
	if err := a.Validate(); err != nil {
		return err
	}
	v, err := json.Marshal(a)
	if err != nil {
		return err
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO alert_states (key, record) VALUES ($1, $2)
		ON CONFLICT (key) DO UPDATE SET record = EXCLUDED.record`, []byte(a.Key), v)
	return err
}

// ListAlertStates returns every alert state in key order (byte-wise).
func (s *Store) ListAlertStates(ctx context.Context) ([]store.AlertState, error) {
	rows, err := s.pool.Query(ctx, "SELECT record FROM alert_states ORDER BY key")
	if err != nil {
		return nil, err
	}
	var out []store.AlertState
	var v []byte
	_, err = pgx.ForEachRow(rows, []any{&v}, func() error {
		var a store.AlertState
		if err := json.Unmarshal(v, &a); err != nil {
			return fmt.Errorf("alert state: %w", err)
		}
		out = append(out, a)
		return nil
	})
	return out, err
}

// DeleteAlertState durably removes key, if it is there.
func (s *Store) DeleteAlertState(ctx context.Context, key string) error {
	_, err := s.pool.Exec(ctx, "DELETE FROM alert_states WHERE key = $1", []byte(key))
	return err
}

// GetRootRotation returns the current root-rotation record or
// store.ErrNotFound.
func (s *Store) GetRootRotation(ctx context.Context) (store.RootRotation, error) {
	var v []byte
	err := s.pool.QueryRow(ctx, "SELECT record FROM root_rotation WHERE id = 1").Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.RootRotation{}, store.ErrNotFound
	}
	if err != nil {
		return store.RootRotation{}, err
	}
	var r store.RootRotation
	if err := json.Unmarshal(v, &r); err != nil {
		return store.RootRotation{}, fmt.Errorf("root rotation record: %w", err)
	}
	return r, nil
}

// PutRootRotation durably replaces the current root-rotation record under
// fence (store.RootRotations), in one transaction with the fence check.
func (s *Store) PutRootRotation(ctx context.Context, r store.RootRotation, fence store.Fence) error {
	v, err := store.EncodeRootRotation(r)
	if err != nil {
		return err
	}
	return s.inTx(ctx, func(tx pgx.Tx) error {
		last, next, err := checkFenceIn(ctx, tx, fence)
		if err != nil {
			return err
		}
		if err := putFenceIn(ctx, tx, last, next); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO root_rotation (id, record) VALUES (1, $1)
		ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record`, v)
		return err
	})
}

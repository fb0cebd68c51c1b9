// Package pgstore is meshca's shared store on PostgreSQL: several meshca
// replicas keep their issuance records, CA generations, revocations, CRL
// numbers, alert states and root-rotation journal in one database, through
// github.com/jackc/pgx/v5.
//
// Every write returns after its transaction committed with
// synchronous_commit on (PostgreSQL documentation, "Asynchronous Commit":
// the commit waits until its WAL is flushed to durable storage), so an
// acknowledged record survives a crash of the server. The schema is
// embedded and versioned (migrations/), and applied under an advisory lock
// so that replicas starting together apply it once. Invariants that two
// replicas could race on are kept by the database: CRL numbers and
// revocation Seqs are rows updated in the caller's transaction, and a
// partial unique index allows one active generation per signer lineage.
//
// It owns the SQL and nothing else: which store meshca uses is decided in
// ca/store/storeopen.
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/meshca/meshca/ca/store"
)

// Store is a PostgreSQL-backed store.Store.
type Store struct {
	pool       *pgxpool.Pool
	connConfig *pgx.ConnConfig
	password   func() (string, error)

	healthMu sync.Mutex
	health   *pgx.Conn // Healthy's own connection (nil: not connected)
	closed   bool
}

var (
	_ store.Store         = (*Store)(nil)
	_ store.ExpiryIndex   = (*Store)(nil)
	_ store.RootRotations = (*Store)(nil)
)

// ErrDuplicateSerial refuses a second, different certificate under a
// serial that is already recorded: serials must be unique per CA.
var ErrDuplicateSerial = errors.New("a different certificate with this serial is already recorded")

// Option configures Open.
type Option func(*options)

type options struct {
	password func() (string, error)
	log      *slog.Logger
}

// WithPassword sets the password of the database user, read by the caller
// from a file or the environment; it never appears in the connection
// string, in errors or in logs.
func WithPassword(p string) Option {
	return WithPasswordFunc(func() (string, error) { return p, nil })
}

// WithPasswordFunc sets how the password of the database user is read: on
// every new connection, so that a password rotated in its file (a mounted
// Secret) is used from the next connection on, without a restart.
func WithPasswordFunc(f func() (string, error)) Option { return func(o *options) { o.password = f } }

// WithLogger sets the logger of schema migrations.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// Open connects to the database that connString names (a libpq keyword/value
// string or a postgres:// URL; pool settings such as pool_max_conns are
// accepted), checks that its commits are durable, and applies the schema
// migrations this meshca has and the database lacks. It fails when the
// database's schema is newer than this meshca understands.
func Open(ctx context.Context, connString string, opts ...Option) (*Store, error) {
	o := options{log: slog.Default()}
	for _, f := range opts {
		f(&o)
	}
	cfg, err := pgxpool.ParseConfig(connString)
	if err != nil {
		// pgconn redacts the password of connString in its parse errors,
		// and meshca's configuration refuses a DSN with a password.
		return nil, fmt.Errorf("postgres store: %w", err)
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "meshca"
	}
	if o.password != nil {
		cfg.BeforeConnect = func(_ context.Context, cc *pgx.ConnConfig) error {
			return setPassword(cc, o.password)
		}
	}
	cfg.AfterConnect = prepareSession
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres store: %w", err)
	}
	s := &Store{pool: pool, connConfig: cfg.ConnConfig.Copy(), password: o.password}
	if err := s.checkServer(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	if err := migrate(ctx, pool, o.log); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres store %s/%s: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Database, err)
	}
	return s, nil
}

// prepareSession runs on every new connection (requireDurableCommits,
// requireReadCommitted).
func prepareSession(ctx context.Context, c *pgx.Conn) error {
	if err := requireDurableCommits(ctx, c); err != nil {
		return err
	}
	return requireReadCommitted(ctx, c)
}

// requireReadCommitted: the store's transactions are written for READ
// COMMITTED, PostgreSQL's default: they take a row lock, and the
// statements after it read with a snapshot taken once the lock is held
// (Revoke, NextCRLNumber, ActivateGeneration). Under a server, database
// or role default of REPEATABLE READ or SERIALIZABLE, replicas that
// contend for one row would fail with serialization errors instead of
// waiting for each other, so the session's default is set.
func requireReadCommitted(ctx context.Context, c *pgx.Conn) error {
	var v string
	if err := c.QueryRow(ctx, "SHOW default_transaction_isolation").Scan(&v); err != nil {
		return err
	}
	if v != "read committed" {
		_, err := c.Exec(ctx, "SET default_transaction_isolation = 'read committed'")
		return err
	}
	return nil
}

// requireDurableCommits runs on every new connection: a session whose
// synchronous_commit is off (a server, database or role default) would
// acknowledge commits that a crash can still lose, so it is turned on.
// The other values (local, remote_write, on, remote_apply) all flush the
// WAL locally before the commit returns and are kept.
func requireDurableCommits(ctx context.Context, c *pgx.Conn) error {
	var v string
	if err := c.QueryRow(ctx, "SHOW synchronous_commit").Scan(&v); err != nil {
		return err
	}
	if v == "off" {
		_, err := c.Exec(ctx, "SET synchronous_commit = on")
		return err
	}
	return nil
}

// checkServer connects once and refuses a server that runs with fsync off
// (PostgreSQL documentation, "fsync": a crash can then lose or corrupt
// committed data).
func (s *Store) checkServer(ctx context.Context) error {
	var fsync string
	if err := s.pool.QueryRow(ctx, "SHOW fsync").Scan(&fsync); err != nil {
		return fmt.Errorf("postgres store: connect: %w", err)
	}
	if fsync != "on" {
		return errors.New("postgres store: the server runs with fsync=" + fsync +
			", so a crash can lose records it acknowledged; set fsync = on in its postgresql.conf")
	}
	return nil
}

// setPassword sets cc's password from f, when f gives one.
func setPassword(cc *pgx.ConnConfig, f func() (string, error)) error {
	pw, err := f()
	if err != nil {
		return err
	}
	if pw != "" {
		cc.Password = pw
	}
	return nil
}

// Close closes every connection of the pool and the health connection.
func (s *Store) Close() error {
	s.pool.Close()
	s.healthMu.Lock()
	defer s.healthMu.Unlock()
	s.closed = true
	s.closeHealth()
	return nil
}

// closeHealth closes Healthy's connection, waiting at most a second for
// the server; healthMu is held.
func (s *Store) closeHealth() {
	if s.health == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = s.health.Close(ctx)
	s.health = nil
}

// Healthy is nil while the database answers within two seconds: meshca
// serve reports it on /readyz, since a replica that cannot reach the
// database can record no issuance. It pings on a connection of its own,
// outside the pool: a pool saturated by a burst of issuances is load, not
// an outage, and must not make every replica unready at once.
func (s *Store) Healthy() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s.healthMu.Lock()
	defer s.healthMu.Unlock()
	if s.closed {
		return errors.New("postgres store: closed")
	}
	if s.health == nil || s.health.IsClosed() {
		cc := s.connConfig.Copy()
		if s.password != nil {
			if err := setPassword(cc, s.password); err != nil {
				return fmt.Errorf("postgres store: %w", err)
			}
		}
		c, err := pgx.ConnectConfig(ctx, cc)
		if err != nil {
			return fmt.Errorf("postgres store: %w", err)
		}
		s.health = c
	}
	if err := s.health.Ping(ctx); err != nil {
		s.closeHealth()
		return fmt.Errorf("postgres store: %w", err)
	}
	return nil
}

// inTx runs fn in a read-committed transaction and commits it.
func (s *Store) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, s.pool, fn)
}

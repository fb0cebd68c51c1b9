// Package storeopen opens the record store that the configuration selects
// (store.type): the embedded bbolt file or a PostgreSQL database. It is
// the one place that knows which backends exist; everything else holds a
// store.Store (and type-asserts the optional interfaces it needs).
package storeopen

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/ca/store/boltstore"
	"github.com/meshca/meshca/ca/store/pgstore"
)

// ErrLocked is matched (errors.Is) by Open's error when another process
// (a running meshca serve) holds an embedded store; a shared store is
// never locked.
var ErrLocked = boltstore.ErrLocked

// ErrNoStore is matched (errors.Is) by OpenExisting's error when the
// embedded store's file does not exist.
var ErrNoStore = errors.New("no meshca store")

// OpenExisting opens the store of cfg as Open does, for a command that
// reads or changes an existing CA (status, records, revoke, sign): an
// embedded store whose file does not exist is ErrNoStore, where Open
// would create an empty one, so that a mistyped directory reads as "no CA
// here", not as a healthy CA with nothing in it. A PostgreSQL database
// is opened as Open opens it: it must exist already, and the DSN names it
// explicitly.
func OpenExisting(ctx context.Context, cfg config.StoreConfig, log *slog.Logger) (store.Store, error) {
	if cfg.Type == config.StoreBolt || cfg.Type == "" {
		if _, err := os.Stat(cfg.Path); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w at %s: the file does not exist", ErrNoStore, cfg.Path)
		} else if err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
	}
	return Open(ctx, cfg, log)
}

// Open opens the store of cfg, creating an embedded store that does not
// exist yet (meshca init, meshca serve). log receives the store's own messages
// (schema migrations); nil means slog.Default. The caller closes the
// store.
func Open(ctx context.Context, cfg config.StoreConfig, log *slog.Logger) (store.Store, error) {
	if log == nil {
		log = slog.Default()
	}
	switch cfg.Type {
	case config.StoreBolt, "":
		s, err := boltstore.Open(cfg.Path, boltstore.WithCommitDelay(cfg.CommitDelayOrDefault()))
		if err != nil {
			return nil, err // not a nil *boltstore.Store in a non-nil interface
		}
		return s, nil
	case config.StorePostgres:
		// Read once now, for a clear error at start; then again for
		// every new connection, so that a rotated password file (a
		// mounted Secret) takes effect without a restart.
		if _, err := Password(cfg); err != nil {
			return nil, err
		}
		pw := func() (string, error) { return Password(cfg) }
		s, err := pgstore.Open(ctx, cfg.DSN, pgstore.WithPasswordFunc(pw), pgstore.WithLogger(log))
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	return nil, fmt.Errorf("store.type %q is not supported; use %s or %s", cfg.Type, config.StoreBolt, config.StorePostgres)
}

// Password is the PostgreSQL password of cfg: the content of
// store.passwordFile without trailing newlines, else the environment
// variable MESHCA_STORE_PASSWORD, else none (trust, certificate or
// ~/.pgpass authentication).
func Password(cfg config.StoreConfig) (string, error) {
	if cfg.PasswordFile == "" {
		return os.Getenv(config.StorePasswordEnv), nil
	}
	b, err := os.ReadFile(cfg.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("store.passwordFile: %w", err)
	}
	pw := strings.TrimRight(string(b), "\r\n")
	if pw == "" {
		return "", errors.New("store.passwordFile " + cfg.PasswordFile + " is empty; write the database user's password in it")
	}
	return pw, nil
}

// HeldByAnother reports, without waiting, whether another process holds
// the store of cfg open (a bbolt store is one process's at a time, and
// Open waits for it for up to 2 s); always false for PostgreSQL, which
// any number of processes share.
func HeldByAnother(cfg config.StoreConfig) bool {
	switch cfg.Type {
	case config.StoreBolt, "":
		return boltstore.Held(cfg.Path)
	}
	return false
}

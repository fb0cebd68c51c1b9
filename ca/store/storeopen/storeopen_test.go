package storeopen

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/store/boltstore"
	"github.com/meshca/meshca/ca/store/pgstore"
	"github.com/meshca/meshca/test/pgenv"
)

var pg *pgenv.Env

func TestMain(m *testing.M) { os.Exit(pgenv.RunMain(m, &pg)) }

func TestOpen_TheConfiguredTypeSelectsTheBackend(t *testing.T) {
	ctx := context.Background()
	bolt := config.StoreConfig{Type: config.StoreBolt, Path: filepath.Join(t.TempDir(), "meshca.db")}
	s, err := Open(ctx, bolt, nil)
	require.NoError(t, err)
	require.IsType(t, &boltstore.Store{}, s)
	_, err = Open(ctx, bolt, nil)
	require.ErrorIs(t, err, ErrLocked, "a second process on one bbolt file")
	require.NoError(t, s.Close())

	pwFile := filepath.Join(t.TempDir(), "db-password")
	require.NoError(t, os.WriteFile(pwFile, []byte(pg.Password+"\n"), 0o600))
	pgc := config.StoreConfig{Type: config.StorePostgres, DSN: pg.ConnString(pg.CreateDatabase(t)), PasswordFile: pwFile}
	s, err = Open(ctx, pgc, nil)
	require.NoError(t, err)
	require.IsType(t, &pgstore.Store{}, s)
	s2, err := Open(ctx, pgc, nil)
	require.NoError(t, err, "a shared store is never locked")
	require.NoError(t, s2.Close())
	require.NoError(t, s.Close())
}

func TestOpen_PostgresPasswordComesFromTheFileOrTheEnvironment(t *testing.T) {
	ctx := context.Background()
	dsn := pg.ConnString(pg.CreateDatabase(t))

	t.Setenv(config.StorePasswordEnv, pg.Password)
	s, err := Open(ctx, config.StoreConfig{Type: config.StorePostgres, DSN: dsn}, nil)
	require.NoError(t, err, "from MESHCA_STORE_PASSWORD")
	require.NoError(t, s.Close())

	wrong := filepath.Join(t.TempDir(), "wrong")
	require.NoError(t, os.WriteFile(wrong, []byte("not-the-password-4711\n"), 0o600))
	_, err = Open(ctx, config.StoreConfig{Type: config.StorePostgres, DSN: dsn, PasswordFile: wrong}, nil)
	require.ErrorContains(t, err, "password authentication failed", "the file wins over the environment")
	require.NotContains(t, err.Error(), "not-the-password-4711", "the password never appears in an error")

	empty := filepath.Join(t.TempDir(), "empty")
	require.NoError(t, os.WriteFile(empty, []byte("\n"), 0o600))
	_, err = Open(ctx, config.StoreConfig{Type: config.StorePostgres, DSN: dsn, PasswordFile: empty}, nil)
	require.EqualError(t, err, "store.passwordFile "+empty+" is empty; write the database user's password in it")

	t.Setenv(config.StorePasswordEnv, "")
	_, err = Open(ctx, config.StoreConfig{Type: config.StorePostgres, DSN: dsn}, nil)
	require.ErrorContains(t, err, "password", "no password at all: the server asks for one")
}

package storeopen

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

func TestOpenExisting_AMissingEmbeddedStoreIsNotCreated(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "ca")
	bolt := config.StoreConfig{Type: config.StoreBolt, Path: filepath.Join(dir, "meshca.db")}
	_, err := OpenExisting(ctx, bolt, nil)
	require.ErrorIs(t, err, ErrNoStore)
	require.NoDirExists(t, dir)

	s, err := Open(ctx, bolt, nil)
	require.NoError(t, err, "Open creates it")
	require.NoError(t, s.Close())
	s, err = OpenExisting(ctx, bolt, nil)
	require.NoError(t, err, "and OpenExisting opens it then")
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

// The database user's password is rotated: the Secret mounted as
// store.passwordFile changes, and the role's password with it. Connections
// made after that (here, after the server ended the old ones) use the new
// password, without a restart of meshca.
func TestOpen_RotatedPasswordFileIsUsedByNewConnections(t *testing.T) {
	ctx := context.Background()
	db := pg.CreateDatabase(t)
	role := "meshca_rot_" + db[len(db)-6:]
	require.NoError(t, pg.Exec(ctx, db, "CREATE ROLE "+role+" LOGIN PASSWORD 'first-password-1'"))
	t.Cleanup(func() { _ = pg.Exec(context.Background(), "postgres", "DROP ROLE IF EXISTS "+role) })
	require.NoError(t, pg.Exec(ctx, db, "ALTER DATABASE "+db+" OWNER TO "+role))
	pwFile := filepath.Join(t.TempDir(), "db-password")
	require.NoError(t, os.WriteFile(pwFile, []byte("first-password-1\n"), 0o600))
	dsn := strings.Replace(pg.ConnString(db), "user="+pgenv.User, "user="+role, 1)
	s, err := Open(ctx, config.StoreConfig{Type: config.StorePostgres, DSN: dsn, PasswordFile: pwFile}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	_, err = s.ListGenerations(ctx)
	require.NoError(t, err)

	require.NoError(t, pg.Exec(ctx, db, "ALTER ROLE "+role+" PASSWORD 'second-password-2'"))
	require.NoError(t, os.WriteFile(pwFile, []byte("second-password-2\n"), 0o600))
	require.NoError(t, pg.Exec(ctx, db, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role))

	require.Eventually(t, func() bool {
		_, err := s.ListGenerations(ctx)
		return err == nil
	}, 10*time.Second, 50*time.Millisecond, "a new connection with the rotated password")
	h, ok := s.(interface{ Healthy() error })
	require.True(t, ok)
	require.NoError(t, h.Healthy())
}

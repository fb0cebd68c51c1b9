package pgenv

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

func TestStart_RunsARealServerThatSurvivesACrashAndStopsClean(t *testing.T) {
	e, err := Start()
	require.NoError(t, err)
	dir := e.dir
	t.Cleanup(e.Stop)

	ctx := context.Background()
	db := e.CreateDatabase(t)
	require.NoError(t, e.Exec(ctx, db, "CREATE TABLE t (v int); INSERT INTO t VALUES (42)"))
	var fsync, sync string
	c, err := pgx.Connect(ctx, e.URL(db))
	require.NoError(t, err)
	require.NoError(t, c.QueryRow(ctx, "SELECT current_setting('fsync'), current_setting('synchronous_commit')").Scan(&fsync, &sync))
	_ = c.Close(ctx)
	require.Equal(t, []string{"on", "on"}, []string{fsync, sync}, "PostgreSQL's durable defaults")

	// Password authentication guards TCP: ConnString carries none.
	_, err = pgx.Connect(ctx, e.ConnString(db))
	require.ErrorContains(t, err, "password")

	if os.Geteuid() == 0 {
		st, err := os.Stat(filepath.Join(dir, "data"))
		require.NoError(t, err)
		require.NotZero(t, st.Sys().(*syscall.Stat_t).Uid, "as root, the cluster belongs to the postgres user")
	}

	require.NoError(t, e.Kill())
	require.False(t, e.Running())
	require.NoError(t, e.Restart())
	var v int
	c, err = pgx.Connect(ctx, e.URL(db))
	require.NoError(t, err)
	require.NoError(t, c.QueryRow(ctx, "SELECT v FROM t").Scan(&v))
	_ = c.Close(ctx)
	require.Equal(t, 42, v)

	e.Stop()
	require.False(t, e.Running())
	_, err = os.Stat(dir)
	require.ErrorIs(t, err, os.ErrNotExist, "Stop removes the cluster")
}

func TestStart_WithoutPostgreSQLSaysToRunMakeDeps(t *testing.T) {
	old := binRoot
	binRoot = t.TempDir()
	t.Cleanup(func() { binRoot = old })
	_, err := Start()
	require.EqualError(t, err, "pgenv: no PostgreSQL server in "+binRoot+"/*/bin (initdb and postgres): run `make deps` (installs Debian's postgresql package)")
}

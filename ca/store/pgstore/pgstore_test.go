package pgstore

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/ca/store/storetest"
	"github.com/meshca/meshca/test/logbuf"
	"github.com/meshca/meshca/test/pgenv"
)

// TestOpen_ReplicasStartingTogetherApplyTheSchemaOnce opens eight stores at
// the same moment on an empty database, as replicas of a fresh install
// do: every Open succeeds, and each migration is applied (and recorded)
// once.
func TestOpen_ReplicasStartingTogetherApplyTheSchemaOnce(t *testing.T) {
	db := pg.CreateDatabase(t)
	const replicas = 8
	var logs logbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	start := make(chan struct{})
	stores := make([]*Store, replicas)
	errs := make([]error, replicas)
	var wg sync.WaitGroup
	for i := range replicas {
		wg.Go(func() {
			<-start
			stores[i], errs[i] = Open(context.Background(), pg.ConnString(db), WithPassword(pg.Password), WithLogger(log))
		})
	}
	close(start)
	wg.Wait()
	for i := range replicas {
		require.NoError(t, errs[i], "replica %d", i)
		defer stores[i].Close()
	}
	require.Equal(t, SchemaVersion(), strings.Count(logs.String(), "applied a schema migration"), logs.String())
	var versions []int
	rows, err := stores[0].pool.Query(context.Background(), "SELECT version FROM schema_migrations ORDER BY version")
	require.NoError(t, err)
	for rows.Next() {
		var v int
		require.NoError(t, rows.Scan(&v))
		versions = append(versions, v)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []int{1, 2, 3, 4}, versions)
	require.Equal(t, 4, SchemaVersion())
	// Every replica works on the one schema.
	for i, s := range stores {
		require.NoError(t, s.PutIssuance(context.Background(), storetest.Issuance(i, storetest.T0)))
	}
	n := 0
	require.NoError(t, stores[0].ListIssuances(context.Background(), func(store.Issuance) bool { n++; return true }))
	require.Equal(t, replicas, n)
}

func TestOpen_RefusesASchemaNewerThanItKnows(t *testing.T) {
	db := pg.CreateDatabase(t)
	openDB(t, db).Close()
	require.NoError(t, pg.Exec(context.Background(), db, fmt.Sprintf("INSERT INTO schema_migrations (version, name) VALUES (%d, 'future.sql')", SchemaVersion()+1)))
	_, err := Open(context.Background(), pg.ConnString(db), WithPassword(pg.Password))
	require.ErrorContains(t, err, fmt.Sprintf("schema version %d is newer than this meshca understands (%d); upgrade meshca", SchemaVersion()+1, SchemaVersion()))
}

// TestOpen_SessionsCommitSynchronouslyWhateverTheDatabaseDefault: a
// database whose default is synchronous_commit=off would acknowledge
// commits a crash can lose; every session of the store turns it on.
func TestOpen_SessionsCommitSynchronouslyWhateverTheDatabaseDefault(t *testing.T) {
	db := pg.CreateDatabase(t)
	require.NoError(t, pg.Exec(context.Background(), db, "ALTER DATABASE "+db+" SET synchronous_commit = off"))
	s := openDB(t, db)
	defer s.Close()
	// Several sessions at once (each holds its connection until all have
	// begun): the setting is per connection.
	const sessions = 4
	var begun, wg sync.WaitGroup
	begun.Add(sessions)
	got := make([]string, sessions)
	errs := make([]error, sessions)
	for i := range sessions {
		wg.Go(func() {
			tx, err := s.pool.Begin(context.Background())
			begun.Done()
			if err != nil {
				errs[i] = err
				return
			}
			defer tx.Rollback(context.Background())
			begun.Wait()
			errs[i] = tx.QueryRow(context.Background(), "SHOW synchronous_commit").Scan(&got[i])
		})
	}
	wg.Wait()
	for i := range got {
		require.NoError(t, errs[i])
		require.Equal(t, "on", got[i], "session %d", i)
	}
	// The database default itself is off: the store's setting is what
	// made the sessions durable.
	require.NoError(t, pg.Exec(context.Background(), db,
		"DO $$ BEGIN IF current_setting('synchronous_commit') <> 'off' THEN RAISE 'the database default is not off'; END IF; END $$"))
}

func TestOpen_RefusesAServerWithFsyncOff(t *testing.T) {
	db := pg.CreateDatabase(t)
	ctx := context.Background()
	require.NoError(t, pg.Exec(ctx, "postgres", "ALTER SYSTEM SET fsync = off"))
	require.NoError(t, pg.Exec(ctx, "postgres", "SELECT pg_reload_conf()"))
	t.Cleanup(func() {
		require.NoError(t, pg.Exec(ctx, "postgres", "ALTER SYSTEM RESET fsync"))
		require.NoError(t, pg.Exec(ctx, "postgres", "SELECT pg_reload_conf()"))
	})
	var err error
	require.Eventually(t, func() bool {
		var s *Store
		s, err = Open(ctx, pg.ConnString(db), WithPassword(pg.Password))
		if s != nil {
			s.Close()
		}
		return err != nil
	}, 10*time.Second, 20*time.Millisecond, "the reload is asynchronous")
	require.EqualError(t, err, "postgres store: the server runs with fsync=off, so a crash can lose records it acknowledged; set fsync = on in its postgresql.conf")
}

// TestOpen_UpgradesADatabaseOfAnOlderSchemaInPlace: a database a meshca of
// schema 1 wrote gets the later migrations when a newer meshca opens it,
// and keeps its records.
func TestOpen_UpgradesADatabaseOfAnOlderSchemaInPlace(t *testing.T) {
	ctx := context.Background()
	db := pg.CreateDatabase(t)
	v1, err := migrationFiles.ReadFile("migrations/0001_init.sql")
	require.NoError(t, err)
	require.NoError(t, pg.Exec(ctx, db, string(v1)+`;
		CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());
		INSERT INTO schema_migrations (version, name) VALUES (1, '0001_init.sql');`))
	require.NoError(t, pg.Exec(ctx, db, "INSERT INTO crl_numbers (scope, last) VALUES ('gen-1', 41)"))

	s := openDB(t, db)
	defer s.Close()
	var versions []int
	rows, err := s.pool.Query(ctx, "SELECT version FROM schema_migrations ORDER BY version")
	require.NoError(t, err)
	for rows.Next() {
		var v int
		require.NoError(t, rows.Scan(&v))
		versions = append(versions, v)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []int{1, 2, 3, 4}, versions)
	cut, err := s.NextCRLNumber(ctx, "gen-1")
	require.NoError(t, err)
	require.Equal(t, uint64(42), cut.Number, "the records of schema 1 are kept")
	g := add(t, s, 1)
	require.NoError(t, s.SwitchGeneration(ctx, g.ID, 0, store.Fence{Holder: "a", Token: 1}, storetest.T0), "schema 2's fence is there")
}

// TestOpen_ARoleThatOnlyReadsAndWritesTheTablesOpensAMigratedDatabase: after
// the first start (which creates the schema) meshca runs with a role that
// may only read and write the tables and use their sequences, as the
// README advises; opening and writing must not need CREATE.
func TestOpen_ARoleThatOnlyReadsAndWritesTheTablesOpensAMigratedDatabase(t *testing.T) {
	ctx := context.Background()
	db := pg.CreateDatabase(t)
	openDB(t, db).Close()
	role := "rw_" + db
	for _, q := range []string{
		"CREATE ROLE " + role + " LOGIN PASSWORD 'rw-secret'",
		"REVOKE CREATE ON SCHEMA public FROM PUBLIC",
		"GRANT USAGE ON SCHEMA public TO " + role,
		"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO " + role,
		"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO " + role,
	} {
		require.NoError(t, pg.Exec(ctx, db, q), q)
	}
	t.Cleanup(func() {
		_ = pg.Exec(ctx, db, "DROP OWNED BY "+role)
		_ = pg.Exec(ctx, "postgres", "DROP ROLE IF EXISTS "+role)
	})
	conn := strings.Replace(pg.ConnString(db), "user="+pgenv.User, "user="+role, 1)
	s, err := Open(ctx, conn, WithPassword("rw-secret"))
	require.NoError(t, err)
	defer s.Close()
	_, err = s.AddGeneration(ctx, store.Generation{CertDER: []byte{1}, KeyRef: "k", Source: "test", CreatedAt: time.Now()})
	require.NoError(t, err)
	_, err = s.NextCRLNumber(ctx, "gen-1")
	require.NoError(t, err)
}

// A pool whose every connection is busy (a burst of issuances) is load,
// not an outage: Healthy, which /readyz reports, still answers at once, so
// that every replica does not turn unready together under load. Once the
// database is gone it is unhealthy.
func TestHealthy_ASaturatedPoolIsNotAnOutage(t *testing.T) {
	db := pg.CreateDatabase(t)
	s, err := Open(context.Background(), pg.ConnString(db)+" pool_max_conns=2", WithPassword(pg.Password))
	require.NoError(t, err)
	defer s.Close()
	var held []interface{ Release() }
	var release sync.Once
	releaseAll := func() {
		release.Do(func() {
			for _, c := range held {
				c.Release()
			}
		})
	}
	defer releaseAll() // before Close, which waits for them
	for range 2 {
		c, err := s.pool.Acquire(context.Background())
		require.NoError(t, err)
		held = append(held, c)
	}
	start := time.Now()
	require.NoError(t, s.Healthy(), "every pooled connection busy")
	require.Less(t, time.Since(start), time.Second)
	releaseAll()
	require.NoError(t, s.Healthy())

	require.NoError(t, pg.Exec(context.Background(), "postgres",
		"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", db))
	require.NoError(t, pg.Exec(context.Background(), "postgres", "ALTER DATABASE "+db+" WITH ALLOW_CONNECTIONS false"))
	t.Cleanup(func() {
		_ = pg.Exec(context.Background(), "postgres", "ALTER DATABASE "+db+" WITH ALLOW_CONNECTIONS true")
	})
	require.Error(t, s.Healthy(), "the database refuses connections")
}

package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/test/pgenv"
)

// usePostgres rewrites the store section of the --dir configuration that
// meshca init wrote to a database of pg, with the password in a file, and
// removes the bbolt file, so that nothing can read it.
func usePostgres(t *testing.T, pg *pgenv.Env, dir, db string) {
	t.Helper()
	pwFile := filepath.Join(t.TempDir(), "db-password")
	require.NoError(t, os.WriteFile(pwFile, []byte(pg.Password+"\n"), 0o600))
	cfgPath := filepath.Join(dir, "meshca.yaml")
	b, err := os.ReadFile(cfgPath)
	require.NoError(t, err)
	const bolt = "store:\n  type: bolt\n  path: meshca.db\n"
	require.Contains(t, string(b), bolt)
	pgStore := "store:\n  type: postgres\n  dsn: \"" + pg.ConnString(db) + "\"\n  passwordFile: " + pwFile + "\n"
	require.NoError(t, os.WriteFile(cfgPath, []byte(strings.Replace(string(b), bolt, pgStore, 1)), 0o600))
	require.NoError(t, os.Remove(filepath.Join(dir, "meshca.db")))
}

// otherHost writes the configuration of dir as another host would hold
// it (the same database and CA files, its own admin socket, on which no
// serve answers) and returns its path: the CLI run with it works on the
// PostgreSQL store itself.
func otherHost(t *testing.T, dir string) string {
	t.Helper()
	other := filepath.Join(t.TempDir(), "meshca.yaml")
	b, err := os.ReadFile(filepath.Join(dir, "meshca.yaml"))
	require.NoError(t, err)
	abs := strings.NewReplacer("rootCert: root-cert.pem", "rootCert: "+filepath.Join(dir, "root-cert.pem"),
		"rootKey: root-key.pem", "rootKey: "+filepath.Join(dir, "root-key.pem"),
		"rootPQKey: root-pq-key.pem", "rootPQKey: "+filepath.Join(dir, "root-pq-key.pem"),
		"dir: keys", "dir: "+filepath.Join(dir, "keys")).Replace(string(b))
	require.NoError(t, os.WriteFile(other, []byte(abs), 0o600))
	return other
}

// TestServe_PostgresStore_IssuesOverIstioAndRecordsListsItFromTheDatabase
// runs meshca serve on a PostgreSQL store: it mints its intermediate into
// the database, 'meshca sign' (another process) signs a client
// certificate from it and records it there, the Istio endpoint
// authenticates that certificate by its record and issues a workload
// certificate, and 'meshca records list', from a configuration whose admin
// socket no serve answers on, lists both from the database while serve
// runs.
func TestServe_PostgresStore_IssuesOverIstioAndRecordsListsItFromTheDatabase(t *testing.T) {
	pg, err := pgenv.Start()
	require.NoError(t, err)
	t.Cleanup(pg.Stop)
	db := pg.CreateDatabase(t)
	dir := initCA(t)
	usePostgres(t, pg, dir, db)

	s := startServe(t, dir)
	s.waitReady(t, 15*time.Second)
	require.Contains(t, s.logs(), `"store":"postgres host=127.0.0.1`, "serve names its store, without a password")
	require.NotContains(t, s.logs(), pg.Password)

	tmp := t.TempDir()
	csrPath, keyPEM := writeCSRWithKey(t, tmp, workloadID)
	chainPEM := meshca(t, "sign", "--dir", dir, "--csr", csrPath, "--identity", workloadID)
	clientSerial := serialOf(splitPEM(t, chainPEM)[0])
	rootPEM, err := os.ReadFile(filepath.Join(dir, "root-cert.pem"))
	require.NoError(t, err)
	chain := callIstioCA(t, s.grpc, "localhost", rootPEM, []byte(chainPEM), keyPEM, workloadID)
	require.Len(t, chain, 3)
	leaf := splitPEM(t, chain[0])[0]
	leafSerial := serialOf(leaf)

	// Another host's view: the same database, an admin socket no serve
	// answers on, so the CLI reads the records from PostgreSQL itself.
	other := otherHost(t, dir)
	var recs []struct{ Serial, Identity, Requester string }
	for _, line := range strings.Split(strings.TrimSpace(meshca(t, "records", "list", "--config", other, "-o", "json")), "\n") {
		var r struct{ Serial, Identity, Requester string }
		require.NoError(t, json.Unmarshal([]byte(line), &r), line)
		recs = append(recs, r)
	}
	bySerial := map[string]string{}
	for _, r := range recs {
		bySerial[r.Serial] = r.Identity
	}
	require.Equal(t, workloadID, bySerial[clientSerial], "the client certificate 'meshca sign' recorded: %v", recs)
	require.Equal(t, workloadID, bySerial[leafSerial], "the certificate the Istio endpoint issued: %v", recs)
	require.Len(t, recs, 3, "those two and serve's serving certificate: %v", recs)

	// The records are rows of the database, whoever reads them.
	conn, err := pgx.Connect(context.Background(), pg.URL(db))
	require.NoError(t, err)
	defer conn.Close(context.Background())
	var n int
	require.NoError(t, conn.QueryRow(context.Background(),
		"SELECT count(*) FROM issuances WHERE serial IN (decode($1, 'hex'), decode($2, 'hex')) AND identity = $3",
		clientSerial, leafSerial, workloadID).Scan(&n))
	require.Equal(t, 2, n)

	// Through the running serve's admin socket the list is the same.
	require.Equal(t, meshca(t, "records", "list", "--config", other), meshca(t, "records", "list", "--dir", dir))
}

package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/config"
)

// pgMinimal is minimal with a PostgreSQL store.
const pgMinimal = `
root:
  file:
    rootCert: /etc/meshca/root-cert.pem
    rootKey: /etc/meshca/root-key.pem
keyStore:
  dir: /var/lib/meshca/keys
server:
  adminSocket: /run/meshca/admin.sock
store:
  type: postgres
  dsn: host=db.example port=5432 user=meshca dbname=meshca sslmode=verify-full
  passwordFile: /etc/meshca/db-password
`

func TestStore_PostgresValidatesAndPutsLocalFilesByTheAdminSocket(t *testing.T) {
	c, err := config.Parse([]byte(pgMinimal))
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	require.Equal(t, config.StorePostgres, c.Store.Type)
	require.Equal(t, "/run/meshca", c.LocalDir())
	require.Equal(t, "postgres host=db.example port=5432 user=meshca dbname=meshca sslmode=verify-full", c.Store.Describe())

	bolt, err := config.Parse([]byte(minimal))
	require.NoError(t, err)
	require.Equal(t, "/var/lib/meshca", bolt.LocalDir())
	require.Equal(t, "/var/lib/meshca/meshca.db", bolt.Store.Describe())
}

func TestStore_PostgresAdminSocketDefaultsNextToTheConfigFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "meshca.yaml")
	require.NoError(t, os.WriteFile(p, []byte(`
root: {file: {rootCert: root-cert.pem, rootKey: root-key.pem}}
keyStore: {dir: keys}
store: {type: postgres, dsn: "postgres://meshca@127.0.0.1:5432/meshca", passwordFile: db-password}
`), 0o600))
	c, err := config.Load(p)
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	require.Equal(t, filepath.Join(dir, config.AdminSocketFile), c.Server.AdminSocket)
	require.Equal(t, dir, c.LocalDir())
	require.Equal(t, filepath.Join(dir, "db-password"), c.Store.PasswordFile, "relative to the file, like store.path")
}

// noStore is pgMinimal without its store section.
const noStore = `
root: {file: {rootCert: /etc/meshca/root-cert.pem, rootKey: /etc/meshca/root-key.pem}}
keyStore: {dir: /var/lib/meshca/keys}
server: {adminSocket: /run/meshca/admin.sock}
`

func TestStore_EachBadValueSaysHowToFixIt(t *testing.T) {
	for name, tc := range map[string]struct{ store, want string }{
		"postgres without a DSN": {"{type: postgres}",
			"store.dsn: must be set for store.type postgres: a libpq connection string such as 'host=db.example port=5432 user=meshca dbname=meshca sslmode=verify-full', or a postgres:// URL"},
		"password keyword in the DSN": {"{type: postgres, dsn: 'host=db user=meshca password=s3cret dbname=meshca'}",
			"store.dsn: holds a password; remove it and put the password in the file named by store.passwordFile or in the environment variable MESHCA_STORE_PASSWORD, so that it stays out of the configuration and the logs"},
		"password in the URL's userinfo": {"{type: postgres, dsn: 'postgres://meshca:s3cret@db/meshca'}", "store.dsn: holds a password"},
		"password as a URL parameter":    {"{type: postgres, dsn: 'postgresql://meshca@db/meshca?password=s3cret'}", "store.dsn: holds a password"},
		"unparsable URL":                 {"{type: postgres, dsn: 'postgres://meshca:s3cret@db:port/%zz'}", "store.dsn: is not a valid postgres:// URL; check its syntax"},
		"bbolt path with postgres": {"{type: postgres, dsn: 'host=db', path: /var/lib/meshca/meshca.db}",
			"store.path: is the bbolt file; with store.type postgres remove it"},
		"commit delay with postgres": {"{type: postgres, dsn: 'host=db', commitDelay: 1ms}",
			"store.commitDelay: applies to store.type bolt only; remove it"},
		"DSN with bolt": {"{type: bolt, path: /x/meshca.db, dsn: 'host=db'}",
			"store.dsn: and store.passwordFile are for store.type postgres; remove them or set store.type: postgres"},
		"unknown type": {"{type: mysql}",
			`store.type: "mysql" is not supported; use bolt (the embedded store of one meshca process) or postgres (a database that several replicas share)`},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := config.Parse([]byte(noStore + "store: " + tc.store + "\n"))
			require.NoError(t, err)
			err = c.Validate()
			require.ErrorContains(t, err, tc.want)
			require.NotContains(t, err.Error(), "s3cret", "a password is never repeated in a message")
		})
	}
}

func TestRedactDSN_HidesEveryFormOfPassword(t *testing.T) {
	for in, want := range map[string]string{
		"host=db password=s3cret dbname=x":             "host=db password=xxxxx dbname=x",
		"password = 's3 cr\\'et' host=db":              "password = xxxxx host=db",
		"postgres://meshca:s3cret@db:5432/x":           "postgres://meshca:xxxxx@db:5432/x",
		"postgresql://meshca@db/x?password=s3cret&a=b": "postgresql://meshca@db/x?a=b&password=xxxxx",
		"host=db user=meshca dbname=x sslmode=disable": "host=db user=meshca dbname=x sslmode=disable",
		"postgres://meshca:s3cret@db:port/%zz":         "(an unparsable postgres:// URL)",
	} {
		require.Equal(t, want, config.RedactDSN(in), in)
	}
}

// TestStore_ExamplePostgresBlockValidates: the commented PostgreSQL lines
// of deploy/examples/meshca.yaml's store section, uncommented in place of
// its bbolt lines, are a valid configuration.
func TestStore_ExamplePostgresBlockValidates(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "examples", "meshca.yaml"))
	require.NoError(t, err)
	var out []string
	inStore := false
	for _, l := range strings.Split(string(b), "\n") {
		switch {
		case l == "store:":
			inStore = true
		case inStore && !strings.HasPrefix(l, "  "):
			inStore = false
		case inStore && (strings.HasPrefix(l, "  type: bolt") || strings.HasPrefix(l, "  path:") || strings.HasPrefix(l, "  commitDelay:")):
			continue
		case inStore:
			for _, k := range []string{"type", "dsn", "passwordFile"} {
				if strings.HasPrefix(l, "  # "+k+":") {
					l = "  " + strings.TrimPrefix(l, "  # ")
				}
			}
		}
		out = append(out, l)
	}
	path := filepath.Join(t.TempDir(), "meshca.yaml")
	require.NoError(t, os.WriteFile(path, []byte(strings.Join(out, "\n")), 0o600))
	c, err := config.Load(path)
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	require.Equal(t, config.StorePostgres, c.Store.Type)
	require.Equal(t, "host=db.example port=5432 user=meshca dbname=meshca sslmode=verify-full pool_max_conns=8", c.Store.DSN)
	require.Equal(t, "/etc/meshca/db/password", c.Store.PasswordFile)
	require.Empty(t, c.Store.Path)
}

package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/test/pgenv"
)

// TestPostgres_ARevocationAnotherProcessRecordsReachesEveryReplica: on a
// PostgreSQL store other processes write revocations too: 'meshca revoke'
// run from another host's configuration (no serve answers on its admin
// socket, so it records straight into the database), or the previous
// holder of the Lease finishing a revocation after another replica took
// over. The replica that holds the Lease, and one replica that runs
// without a Lease, must still stop authenticating the revoked client
// certificate and list it on its CRL, within moments rather than at the
// next republication or restart.
func TestPostgres_ARevocationAnotherProcessRecordsReachesEveryReplica(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lease bool
	}{{"the Lease holder", true}, {"one replica without a Lease", false}} {
		t.Run(tc.name, func(t *testing.T) {
			var dir string
			if tc.lease {
				c := newHACluster(t, "")
				dir = c.dirA
			} else {
				pg, err := pgenv.Start()
				require.NoError(t, err)
				t.Cleanup(pg.Stop)
				dir = initCA(t)
				usePostgres(t, pg, dir, pg.CreateDatabase(t))
			}
			s := startServe(t, dir)
			s.waitReady(t, 15*time.Second)
			if tc.lease {
				waitFor(t, 10*time.Second, "the replica takes the Lease", func() bool {
					return bytes.Contains([]byte(s.logs()), []byte("took the lease of the singleton jobs"))
				})
			}

			client := "spiffe://cluster.local/ns/shop/sa/client"
			csrPath, keyPEM := writeCSRWithKey(t, t.TempDir(), client)
			certPEM := []byte(meshca(t, "sign", "--dir", dir, "--csr", csrPath, "--identity", client))
			rootPEM, err := os.ReadFile(filepath.Join(dir, "root-cert.pem"))
			require.NoError(t, err)
			require.NoError(t, istioRenew(t, s.grpc, rootPEM, certPEM, keyPEM, client))
			serial := serialOf(splitPEM(t, string(certPEM))[0])

			// Another host revokes it straight into the database.
			cmd := exec.Command(meshcaBin, "revoke", "--config", otherHost(t, dir), "--serial", serial, "--reason", "keyCompromise")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			require.NoError(t, cmd.Run(), stderr.String())

			took := waitFor(t, 5*time.Second, "the running replica refuses the revoked client certificate", func() bool {
				return refusedUnauthenticated(istioRenew(t, s.grpc, rootPEM, certPEM, keyPEM, client))
			})
			t.Logf("refused %s after another process recorded the revocation", took)
			// A fresh database: serve minted generation 1.
			waitFor(t, 5*time.Second, "the running replica's CRL lists it", func() bool { return lists(s.fetchCRL(t, "gen-1.crl"), serial) })
			require.Contains(t, stderr.String(), "Recorded in the database; every meshca serve on it reads it within seconds", "what 'meshca revoke' says")
		})
	}
}

package e2e

import (
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// rrSign has the running serve sign a leaf (meshca sign through its admin
// socket) and returns the chain: leaf, intermediate, then every root.
func rrSign(t *testing.T, dir string) []*x509.Certificate {
	t.Helper()
	chain := splitPEM(t, meshca(t, "sign", "--dir", dir, "--csr", writeCSR(t, t.TempDir(), workloadID), "--identity", workloadID))
	require.GreaterOrEqual(t, len(chain), 3)
	return chain
}

func rrSubjects(cs []*x509.Certificate) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Subject.CommonName)
	}
	return out
}

// rrCaCRL is the ca-crl.pem that s serves (and publishes).
func rrCaCRL(t *testing.T, s *server) []byte {
	t.Helper()
	resp, err := http.Get("http://" + s.ops + "/crl/ca-crl.pem")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", b)
	return b
}

// rrRequireCRLChecked waits until openssl verify -crl_check_all (a CRL
// from every CA of the chain, as Envoy checks a peer against Istio's
// ca-crl.pem) accepts each chain (leaf, intermediate, root) with the
// ca-crl.pem s serves.
func rrRequireCRLChecked(t *testing.T, s *server, what string, chains ...[]*x509.Certificate) {
	t.Helper()
	var out string
	ok := assert.Eventually(t, func() bool {
		caCRL := rrCaCRL(t, s)
		for _, c := range chains {
			var accepted bool
			if out, accepted = opensslVerifyCRLs(t, caCRL, c[2], c[1], c[0]); !accepted {
				return false
			}
		}
		return true
	}, 15*time.Second, 100*time.Millisecond)
	require.True(t, ok, "%s: openssl -crl_check_all refuses a chain with the ca-crl.pem served: %s", what, out)
}

// rrStartVaultToVault starts serve on Vault mount pki-a, with the root:
// section of mount pki-b (to rotate to) in bFile.
func rrStartVaultToVault(t *testing.T) (vr *vaultRoots, dir, bFile string, s *server) {
	t.Helper()
	vr = startVaultRoots(t, "pki-a", "pki-b")
	dir = vr.caDir(t, "pki-a", "", "")
	bFile = filepath.Join(t.TempDir(), "new-root.yaml")
	require.NoError(t, os.WriteFile(bFile, []byte(vr.rootSection("pki-b")), 0o644))
	s = startServe(t, dir)
	s.waitReady(t, 10*time.Second)
	return vr, dir, bFile, s
}

// A Vault root rotates to a second Vault mount named in a file with a
// root: section: the chain's roots are A, then A and B (A first), then B;
// the intermediate moves under B at the switch. While both roots are in
// force, ca-crl.pem carries both mounts' CRLs: a leaf under A, issued
// before the switch, is still checked against a CRL from every CA of its
// chain (Envoy refuses a chain with a CA whose CRL is missing).
func TestServe_RootRotationVaultToASecondMount(t *testing.T) {
	_, dir, bFile, s := rrStartVaultToVault(t)
	c0 := rrSign(t, dir)
	require.Equal(t, []string{"Enterprise Root pki-a"}, rrSubjects(c0[2:]))

	meshca(t, "rotate", "root", "--dir", dir, "--new-root-config", bFile)
	rrWaitPhase(t, dir, s, "wait-for-workloads")
	c1 := rrSign(t, dir)
	require.Equal(t, []string{"Enterprise Root pki-a", "Enterprise Root pki-b"}, rrSubjects(c1[2:]))
	require.NoError(t, c1[1].CheckSignatureFrom(c1[2]), "still under A")
	require.True(t, c1[2].Equal(c0[2]))
	rootB := c1[3]

	meshca(t, "rotate", "advance", "--dir", dir)
	rrWaitPhase(t, dir, s, "wait-out-ttl")
	c3 := rrSign(t, dir)
	require.Equal(t, []string{"Enterprise Root pki-a", "Enterprise Root pki-b"}, rrSubjects(c3[2:]))
	require.NoError(t, c3[1].CheckSignatureFrom(rootB), "the intermediate is under B")
	underA := []*x509.Certificate{c1[0], c1[1], c1[2]}
	underB := []*x509.Certificate{c3[0], c3[1], rootB}
	rrRequireCRLChecked(t, s, "wait-out-ttl", underA, underB)

	meshca(t, "rotate", "advance", "--dir", dir)
	rrWaitPhase(t, dir, s, "done")
	c5 := rrSign(t, dir)
	require.Equal(t, []string{"Enterprise Root pki-b"}, rrSubjects(c5[2:]))
	require.True(t, c5[2].Equal(rootB))
	require.True(t, c5[1].Equal(c3[1]), "the same intermediate under B")
	rrRequireCRLChecked(t, s, "done", []*x509.Certificate{c5[0], c5[1], rootB})
	require.Contains(t, meshca(t, "rotate", "status", "--dir", dir), "root.vault.mount pki-b")
}

// A restart in wait-out-ttl while A's Vault cannot be reached: meshca
// holds no CRL of A, and leaves under A are still in use, so it publishes
// no ca-crl.pem without one (the last good one stays in the cluster) and
// says so with meshca_crl_incomplete.
func TestServe_RootRotationVaultRestartWithoutAsCRL(t *testing.T) {
	vr, dir, bFile, s := rrStartVaultToVault(t)
	meshca(t, "rotate", "root", "--dir", dir, "--new-root-config", bFile)
	rrWaitPhase(t, dir, s, "wait-for-workloads")
	underA := rrSign(t, dir)
	meshca(t, "rotate", "advance", "--dir", dir)
	rrWaitPhase(t, dir, s, "wait-out-ttl")
	rrRequireCRLChecked(t, s, "before the restart", underA[:3])
	s.sigterm(t)

	// A's address (the configured root section) now leads nowhere; B's
	// comes from the rotation's journal.
	setYAML(t, dir, vr.v.Addr, "http://127.0.0.1:1")
	s = startServe(t, dir)
	s.waitReady(t, 20*time.Second)
	require.Eventually(t, func() bool { return s.metricIs(t, "meshca_crl_incomplete", 1) }, 15*time.Second, 100*time.Millisecond, s.logs())
	resp, err := http.Get("http://" + s.ops + "/crl/ca-crl.pem")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode, "no ca-crl.pem without A's CRL")
	require.Contains(t, s.logs(), "Enterprise Root pki-a", "the log names the root whose CRL is missing")
}

package e2e

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

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

// A Vault root rotates to a second Vault mount named in a file with a
// root: section: the chain's roots are A, then A and B (A first), then B;
// the intermediate moves under B at the switch.
func TestServe_RootRotationVaultToASecondMount(t *testing.T) {
	vr := startVaultRoots(t, "pki-a", "pki-b")
	dir := vr.caDir(t, "pki-a", "", "")
	bFile := filepath.Join(t.TempDir(), "new-root.yaml")
	require.NoError(t, os.WriteFile(bFile, []byte(vr.rootSection("pki-b")), 0o644))

	s := startServe(t, dir)
	s.waitReady(t, 10*time.Second)
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

	meshca(t, "rotate", "advance", "--dir", dir)
	rrWaitPhase(t, dir, s, "done")
	c5 := rrSign(t, dir)
	require.Equal(t, []string{"Enterprise Root pki-b"}, rrSubjects(c5[2:]))
	require.True(t, c5[2].Equal(rootB))
	require.True(t, c5[1].Equal(c3[1]), "the same intermediate under B")
	require.Contains(t, meshca(t, "rotate", "status", "--dir", dir), "root.vault.mount pki-b")
}

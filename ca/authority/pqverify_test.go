package authority_test

import (
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/profile"

	"github.com/meshca/meshca/test/pqverifier"
)

func writeDERFiles(t *testing.T, certs map[string]*x509.Certificate) map[string]string {
	t.Helper()
	dir := t.TempDir()
	paths := map[string]string{}
	for name, c := range certs {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, c.Raw, 0o644))
		paths[name] = p
	}
	return paths
}

func TestSign_EngineOutputVerifiedByGo127(t *testing.T) {
	bin := pqverifier.Build(t, "The engine's Catalyst and ML-DSA leaves are then checked only by ca/pqc, crypto/x509 and openssl.")
	run := func(t *testing.T, args ...string) string {
		out, err := exec.Command(bin, args...).CombinedOutput()
		t.Logf("pqverify %s:\n%s", args[0], out)
		require.NoError(t, err, string(out))
		return string(out)
	}

	t.Run("catalyst leaf: classical chain in crypto/x509, alternative signatures in crypto/mldsa", func(t *testing.T) {
		c := newProfileCA(t, profile.Catalyst).sign(t, "")
		f := writeDERFiles(t, map[string]*x509.Certificate{"root.der": c.rootC, "inter.der": c.inter, "leaf.der": c.leaf})
		out := run(t, "catalyst", f["root.der"], f["inter.der"], f["leaf.der"])
		require.Contains(t, out, "ok chain of 3 verified by crypto/x509 Certificate.Verify")
		for _, n := range []string{"root.der", "inter.der", "leaf.der"} {
			require.Contains(t, out, f[n]+": Catalyst alternative signature verified by crypto/mldsa over the preTBSCertificate")
		}
	})

	t.Run("mldsa leaf: pure ML-DSA chain in crypto/x509", func(t *testing.T) {
		c := newProfileCA(t, profile.MLDSA).sign(t, "")
		f := writeDERFiles(t, map[string]*x509.Certificate{"root.der": c.rootC, "inter.der": c.inter, "leaf.der": c.leaf})
		out := run(t, "chain", f["root.der"], f["inter.der"], f["leaf.der"])
		require.Contains(t, out, f["root.der"]+": ML-DSA-65 signature verified by crypto/x509 (public key ML-DSA)")
		require.Contains(t, out, f["inter.der"]+": ML-DSA-65 signature verified by crypto/x509 (public key ML-DSA)")
		require.Contains(t, out, f["leaf.der"]+": ML-DSA-65 signature verified by crypto/x509 (public key ECDSA)")
		require.Contains(t, out, "ok chain of 3 verified by crypto/x509 Certificate.Verify")
	})
}

package authority_test

import (
	"context"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/profile"
)

// go127 is the toolchain used as an independent verifier (the same
// approach as ca/certenc's pqverify_test.go): Go 1.27's crypto/x509 and
// crypto/mldsa check what meshca's engine issues.
const go127 = "go1.27.0"

var pqverifyDir = filepath.Join("..", "..", "test", "pqverify")

// buildPQVerify builds test/pqverify with Go 1.27 and returns the binary,
// or skips LOUDLY when that toolchain cannot be had.
func buildPQVerify(t *testing.T) string {
	t.Helper()
	const why = "\n\n" +
		"******************************************************************\n" +
		"*** SKIPPING INDEPENDENT VERIFICATION OF ENGINE OUTPUT BY " + go127 + "\n" +
		"*** %s\n" +
		"*** The engine's Catalyst and ML-DSA leaves are then checked only \n" +
		"*** by ca/pqc, crypto/x509 (classical) and openssl. Fetch it with:\n" +
		"***   cd test/pqverify && GOTOOLCHAIN=" + go127 + " go version  \n" +
		"******************************************************************\n"
	if testing.Short() {
		t.Skipf(why, "-short given")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf(why, "no go command on PATH")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	env := append(os.Environ(), "GOTOOLCHAIN="+go127, "GOWORK=off")
	probe := exec.CommandContext(ctx, goBin, "version")
	probe.Dir, probe.Env = pqverifyDir, env
	out, err := probe.CombinedOutput()
	if err != nil || !strings.Contains(string(out), go127) {
		t.Skipf(why, "the toolchain could not be fetched: "+strings.TrimSpace(string(out)))
	}
	bin := filepath.Join(t.TempDir(), "pqverify")
	build := exec.CommandContext(ctx, goBin, "build", "-o", bin, ".")
	build.Dir, build.Env = pqverifyDir, env
	out, err = build.CombinedOutput()
	require.NoError(t, err, "build test/pqverify with %s: %s", go127, out)
	return bin
}

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
	bin := buildPQVerify(t)
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

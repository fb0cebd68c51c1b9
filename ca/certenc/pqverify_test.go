package certenc

import (
	"context"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// go127 is the toolchain used as an independent verifier. meshca builds
// with Go 1.26; Go 1.27's crypto/x509 and crypto/mldsa check ML-DSA.
const go127 = "go1.27.0"

// pqverifyDir is the separate module test/pqverify seen from this package.
var pqverifyDir = filepath.Join("..", "..", "test", "pqverify")

// buildPQVerify builds test/pqverify with Go 1.27 and returns the binary,
// or skips LOUDLY when that toolchain cannot be had.
func buildPQVerify(t *testing.T) string {
	t.Helper()
	const why = "\n\n" +
		"******************************************************************\n" +
		"*** SKIPPING INDEPENDENT ML-DSA / CATALYST VERIFICATION BY " + go127 + "\n" +
		"*** %s\n" +
		"*** certenc's PQ output is then checked only by circl and the    \n" +
		"*** Bouncy Castle interop test. Fetch the toolchain with:        \n" +
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

func runPQVerify(t *testing.T, bin string, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	t.Logf("pqverify %s:\n%s", args[0], out)
	return string(out), err
}

func TestBuild_IndependentlyVerifiedByGo127(t *testing.T) {
	bin := buildPQVerify(t)
	dir := t.TempDir()

	t.Run("pure ML-DSA chain verifies in crypto/x509", func(t *testing.T) {
		ch := buildMLDSAChain(t)
		root, leaf := writeDER(t, dir, "mldsa-root.der", ch.root), writeDER(t, dir, "mldsa-leaf.der", ch.leaf)
		out, err := runPQVerify(t, bin, "chain", root, leaf)
		require.NoError(t, err, out)
		require.Contains(t, out, "mldsa-root.der: ML-DSA-65 signature verified by crypto/x509 (public key ML-DSA)")
		require.Contains(t, out, "mldsa-leaf.der: ML-DSA-65 signature verified by crypto/x509 (public key ECDSA)")
		require.Contains(t, out, "ok chain of 2 verified")

		seed := writeDER(t, dir, "mldsa-root.seed", ch.rootKey.seed[:])
		for _, cert := range []string{root, leaf} {
			out, err = runPQVerify(t, bin, "retbs", cert, root, seed)
			require.NoError(t, err, out)
			require.Contains(t, out, "TBSCertificate byte-identical to Go 1.27 x509.CreateCertificate (ML-DSA-65)")
		}

		_, _, sig := outer(t, ch.leaf)
		tampered := append([]byte(nil), ch.leaf...)
		tampered[len(tampered)-len(sig.Bytes)/2] ^= 0x01
		out, err = runPQVerify(t, bin, "chain", root, writeDER(t, dir, "mldsa-leaf-bad.der", tampered))
		require.Error(t, err, "a flipped signature byte must fail: %s", out)
		require.Contains(t, out, "FAIL: ")
	})

	t.Run("Catalyst chain verifies classically in crypto/x509 and alternatively in crypto/mldsa", func(t *testing.T) {
		ch := buildCatalystChain(t)
		root := writeDER(t, dir, "cat-root.der", ch.root)
		inter := writeDER(t, dir, "cat-int.der", ch.intermediate)
		leaf := writeDER(t, dir, "cat-leaf.der", ch.leaf)
		out, err := runPQVerify(t, bin, "catalyst", root, inter, leaf)
		require.NoError(t, err, out)
		require.Contains(t, out, "ok chain of 3 verified")
		for _, f := range []string{"cat-root.der", "cat-int.der", "cat-leaf.der"} {
			require.Contains(t, out, f+": Catalyst alternative signature verified by crypto/mldsa")
		}

		// Classically valid, but alt-signed with a key the intermediate's
		// 2.5.29.72 does not name: only the Catalyst check can notice.
		interCert := parse(t, ch.intermediate)
		leafTmpl := workloadTemplate(t, interCert.SubjectKeyId)
		leafKey := genKey(t, "P256")
		rogue, err := BuildCatalyst(&Template{Certificate: leafTmpl, PublicKey: spkiOf(t, leafKey.Public()), Issuer: interCert.RawSubject},
			ch.intKey, Catalyst{Issuer: newMLDSASigner(t)}, rand.Reader)
		require.NoError(t, err)
		out, err = runPQVerify(t, bin, "catalyst", root, inter, writeDER(t, dir, "cat-leaf-rogue.der", rogue))
		require.Error(t, err, "a wrong alternative key must fail: %s", out)
		require.Contains(t, out, "ok chain of 3 verified", "the classical chain itself is fine")
		require.Contains(t, out, "FAIL: ")
		require.Contains(t, out, "alternative signature does not verify")
	})
}

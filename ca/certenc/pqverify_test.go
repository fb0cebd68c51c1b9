package certenc

import (
	"crypto/rand"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/test/pqverifier"
)

func runPQVerify(t *testing.T, bin string, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	t.Logf("pqverify %s:\n%s", args[0], out)
	return string(out), err
}

func TestBuild_IndependentlyVerifiedByGo127(t *testing.T) {
	bin := pqverifier.Build(t, "ML-DSA and Catalyst certificates from certenc are then checked only by circl, crypto/x509 and openssl.")
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

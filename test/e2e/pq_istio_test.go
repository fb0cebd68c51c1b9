package e2e

import (
	"crypto/x509"
	"encoding/asn1"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/test/pqverifier"
)

var (
	oidAltPublicKey = asn1.ObjectIdentifier{2, 5, 29, 72}
	oidAltSigAlg    = asn1.ObjectIdentifier{2, 5, 29, 73}
	oidAltSigValue  = asn1.ObjectIdentifier{2, 5, 29, 74}
	// AlgorithmIdentifier { id-ml-dsa-65 } with absent parameters.
	mldsa65AlgID = []byte{0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x12}
)

// issueThroughIstioEndpoint starts meshca serve on dir and obtains a leaf
// for workloadID through IstioCertificateService/CreateCertificate, with a
// client certificate from meshca sign. It returns the response chain.
func issueThroughIstioEndpoint(t *testing.T, dir string) []string {
	t.Helper()
	csrPath, keyPEM := writeCSRWithKey(t, t.TempDir(), workloadID)
	clientChain := meshca(t, "sign", "--dir", dir, "--csr", csrPath, "--identity", workloadID)
	s := startServe(t, dir)
	s.waitReady(t, 10*time.Second)
	rootPEM, err := os.ReadFile(filepath.Join(dir, "root-cert.pem"))
	require.NoError(t, err)
	chain := callIstioCA(t, s.grpc, "localhost", rootPEM, []byte(clientChain), keyPEM, workloadID)
	require.Len(t, chain, 3, "Istio order: leaf, intermediate, roots")
	require.False(t, strings.HasPrefix(clientChain, chain[0]), "the endpoint issued a new leaf, not the client's")
	require.Equal(t, string(rootPEM), chain[2], "the response ends with the trusted root")
	return chain
}

func TestIstioEndpoint_CatalystLeafVerifiesWithOpenSSLMeshcaVerifyAndGo127(t *testing.T) {
	dir := initCA(t) // the default profile: catalyst
	cfg, err := os.ReadFile(filepath.Join(dir, "meshca.yaml"))
	require.NoError(t, err)
	require.Contains(t, string(cfg), "issuance:\n  profile: catalyst\n")

	chain := issueThroughIstioEndpoint(t, dir)
	tmp := t.TempDir()
	chainFile := filepath.Join(tmp, "chain.pem")
	require.NoError(t, os.WriteFile(chainFile, []byte(strings.Join(chain, "")), 0o644))
	leaf, inter, root := splitPEM(t, chain[0]), splitPEM(t, chain[1]), splitPEM(t, chain[2])
	require.Len(t, leaf, 1)
	require.Len(t, inter, 1)
	require.Len(t, root, 1)
	require.Equal(t, []string{workloadID}, uriStrings(leaf[0]))

	t.Run("leaf carries .73 and .74, non-critical, and no .72", func(t *testing.T) {
		var ids []string
		for _, e := range leaf[0].Extensions {
			switch {
			case e.Id.Equal(oidAltPublicKey), e.Id.Equal(oidAltSigAlg), e.Id.Equal(oidAltSigValue):
				ids = append(ids, e.Id.String())
				require.False(t, e.Critical, "%v must be non-critical", e.Id)
			}
			if e.Id.Equal(oidAltSigAlg) {
				require.Equal(t, mldsa65AlgID, e.Value, "altSignatureAlgorithm is id-ml-dsa-65")
			}
		}
		require.Equal(t, []string{"2.5.29.73", "2.5.29.74"}, ids)
	})

	t.Run("openssl verify -x509_strict", func(t *testing.T) {
		leafFile := filepath.Join(tmp, "leaf.pem")
		require.NoError(t, os.WriteFile(leafFile, []byte(chain[0]), 0o644))
		interFile := filepath.Join(tmp, "inter.pem")
		require.NoError(t, os.WriteFile(interFile, []byte(chain[1]), 0o644))
		out, err := exec.Command("openssl", "verify", "-x509_strict", "-CAfile", filepath.Join(dir, "root-cert.pem"),
			"-untrusted", interFile, leafFile).CombinedOutput()
		require.NoError(t, err, string(out))
		require.Equal(t, leafFile+": OK\n", string(out))
	})

	t.Run("meshca verify --pq as a relying party with the published anchor", func(t *testing.T) {
		out := meshca(t, "verify", "--chain", chainFile, "--roots", filepath.Join(dir, "root-cert.pem"),
			"--pq", "--pq-anchor", filepath.Join(dir, "pq-anchor.pem"))
		for _, line := range []string{
			"ok    classical: path validation up to 1 trusted root(s) (Go crypto/x509)\n",
			"ok    pq: chain[0] (" + workloadID + ") alt signature (ML-DSA-65) by chain[1] (CN=meshca intermediate,O=meshca)'s alt public key (2.5.29.72)\n",
			"ok    pq: chain[1] (CN=meshca intermediate,O=meshca) alt signature (ML-DSA-65) by trusted anchor \"pq-anchor.pem #1\"\n",
			"ok    pq: chain anchored at a trusted post-quantum key (2 trusted; pqc.VerifyChain)\n",
		} {
			require.Contains(t, out, line)
		}
		require.True(t, strings.HasSuffix(out, "verified: classical chain and post-quantum chain\n"), out)
	})

	t.Run("Go 1.27 crypto/x509 and crypto/mldsa", func(t *testing.T) {
		bin := pqverifier.Build(t, "The Istio-endpoint leaf is then checked only by openssl and meshca verify.")
		files := map[string]*x509.Certificate{"root.der": root[0], "inter.der": inter[0], "leaf.der": leaf[0]}
		paths := map[string]string{}
		for name, c := range files {
			paths[name] = filepath.Join(tmp, name)
			require.NoError(t, os.WriteFile(paths[name], c.Raw, 0o644))
		}
		out, err := exec.Command(bin, "catalyst", paths["root.der"], paths["inter.der"], paths["leaf.der"]).CombinedOutput()
		t.Logf("pqverify catalyst:\n%s", out)
		require.NoError(t, err, string(out))
		require.Contains(t, string(out), "ok chain of 3 verified by crypto/x509 Certificate.Verify\n")
		for _, n := range []string{"root.der", "inter.der", "leaf.der"} {
			require.Contains(t, string(out), "ok "+paths[n]+": Catalyst alternative signature verified by crypto/mldsa over the preTBSCertificate\n")
		}
	})
}

func uriStrings(c *x509.Certificate) []string {
	var out []string
	for _, u := range c.URIs {
		out = append(out, u.String())
	}
	return out
}

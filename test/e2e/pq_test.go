package e2e

import (
	"bytes"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// meshcaResult runs the binary and returns stdout, stderr and its error.
func meshcaResult(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(meshcaBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

func initProfileCA(t *testing.T, profile string, extra ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca-"+profile)
	out := meshca(t, append([]string{"init", "--dir", dir, "--profile", profile}, extra...)...)
	require.Contains(t, out, "(trust domain cluster.local, profile "+profile+")")
	return dir
}

func signChain(t *testing.T, dir, profile string) string {
	t.Helper()
	chain := meshca(t, "sign", "--dir", dir, "--csr", writeCSR(t, t.TempDir(), workloadID), "--identity", workloadID, "--profile", profile)
	p := filepath.Join(t.TempDir(), "chain.pem")
	require.NoError(t, os.WriteFile(p, []byte(chain), 0o644))
	return p
}

func TestPQ_InitSignVerifyForEveryProfile(t *testing.T) {
	cases := map[string]struct {
		pqLines  []string // lines verify --pq must print
		verified string
	}{
		"catalyst": {[]string{
			"ok    classical: path validation up to 1 trusted root(s) (Go crypto/x509)\n",
			"ok    pq: chain[0] (spiffe://cluster.local/ns/default/sa/app) alt signature (ML-DSA-65) by chain[1] (CN=meshca intermediate,O=meshca)'s alt public key (2.5.29.72)\n",
			"ok    pq: chain[1] (CN=meshca intermediate,O=meshca) alt signature (ML-DSA-65) by trusted anchor \"pq-anchor.pem #1\"\n",
		}, "verified: classical chain and post-quantum chain\n"},
		"composite": {[]string{
			"skip  classical chain (Go crypto/x509): the chain is signed with post-quantum keys (MLDSA65-ECDSA-P256-SHA512), which crypto/x509 cannot verify; verify it with --pq\n",
			"ok    pq: chain[0] (spiffe://cluster.local/ns/default/sa/app) composite signature (both components) (MLDSA65-ECDSA-P256-SHA512) by chain[1] (CN=meshca intermediate,O=meshca)'s public key\n",
		}, "verified: post-quantum chain\n"},
		"mldsa": {[]string{
			"ok    pq: chain[0] (spiffe://cluster.local/ns/default/sa/app) signature (ML-DSA-65) by chain[1] (CN=meshca intermediate,O=meshca)'s public key\n",
			"ok    pq: chain[1] (CN=meshca intermediate,O=meshca) signature (ML-DSA-65) by trusted anchor \"pq-anchor.pem #1\"\n",
		}, "verified: post-quantum chain\n"},
	}
	for profile, tc := range cases {
		t.Run(profile, func(t *testing.T) {
			dir := initProfileCA(t, profile)
			require.FileExists(t, filepath.Join(dir, "pq-anchor.pem"))
			cfg, err := os.ReadFile(filepath.Join(dir, "meshca.yaml"))
			require.NoError(t, err)
			require.Contains(t, string(cfg), "intermediate:\n  profile: "+profile+"\n")
			require.Contains(t, string(cfg), "issuance:\n  profile: "+profile+"\n")

			chain := signChain(t, dir, profile)
			out := meshca(t, "verify", "--dir", dir, "--chain", chain, "--pq")
			for _, line := range tc.pqLines {
				require.Contains(t, out, line)
			}
			require.Contains(t, out, "ok    pq: chain anchored at a trusted post-quantum key (2 trusted; pqc.VerifyChain)\n")
			require.True(t, strings.HasSuffix(out, tc.verified), out)

			// One flipped byte in the leaf's signature fails the PQ check
			// (for catalyst the alt signature sits in the TBS, so both fail).
			bad := tamperLeafSignature(t, chain, profile)
			out, _, err = meshcaResult(t, "verify", "--dir", dir, "--chain", bad, "--pq")
			require.Error(t, err, out)
			require.Contains(t, out, "FAIL  pq: chain[0] (spiffe://cluster.local/ns/default/sa/app) ")
			require.True(t, strings.HasSuffix(out, "verification FAILED\n"), out)
		})
	}

	t.Run("classical", func(t *testing.T) {
		dir := initProfileCA(t, "classical")
		require.NoFileExists(t, filepath.Join(dir, "pq-anchor.pem"))
		chain := signChain(t, dir, "classical")
		out := meshca(t, "verify", "--dir", dir, "--chain", chain)
		require.Contains(t, out, "ok    classical: path validation up to 1 trusted root(s) (Go crypto/x509)\n")
		require.True(t, strings.HasSuffix(out, "verified: classical chain\n"), out)

		out, _, err := meshcaResult(t, "verify", "--dir", dir, "--chain", chain, "--pq")
		require.Error(t, err, "a classical chain has no post-quantum signature to verify")
		require.Contains(t, out, "FAIL  pq: chain[0] (spiffe://cluster.local/ns/default/sa/app) post-quantum signature: pqc: certificate carries no post-quantum signature: it is a classical certificate, with nothing post-quantum to verify\n")
	})
}

// tamperLeafSignature flips one byte in the leaf's post-quantum signature:
// the certificate signature (composite, mldsa) or the altSignatureValue
// (catalyst), and writes the chain back.
func tamperLeafSignature(t *testing.T, chainPath, profile string) string {
	t.Helper()
	b, err := os.ReadFile(chainPath)
	require.NoError(t, err)
	block, rest := pem.Decode(b)
	require.NotNil(t, block)
	der := block.Bytes
	if profile == "catalyst" {
		// The altSignatureValue is the last extension: its tail sits just
		// before the signatureAlgorithm and signature of the certificate.
		certs := splitPEM(t, string(b))
		der[len(der)-len(certs[0].Signature)-40] ^= 0x01
	} else {
		der[len(der)-100] ^= 0x01
	}
	p := filepath.Join(t.TempDir(), "bad-chain.pem")
	require.NoError(t, os.WriteFile(p, append(pem.EncodeToMemory(block), rest...), 0o644))
	return p
}

func TestPQ_SignRefusesALeafProfileTheCACannotIssue(t *testing.T) {
	dir := initProfileCA(t, "catalyst")
	_, stderr, err := meshcaResult(t, "sign", "--dir", dir, "--csr", writeCSR(t, t.TempDir(), workloadID), "--identity", workloadID, "--profile", "composite")
	require.Error(t, err)
	require.Contains(t, stderr, "Error: a CA of profile catalyst cannot issue composite certificates (it can issue [catalyst classical])\n")

	// The catalyst CA issues classical leaves on request.
	chain := signChain(t, dir, "classical")
	out := meshca(t, "inspect", chain)
	require.Contains(t, out, "    Post-quantum:          profile classical (no post-quantum signature)\n")
}

func TestPQ_InspectNamesTheAlternativeSignatureAlgorithm(t *testing.T) {
	dir := initProfileCA(t, "catalyst", "--pq-algorithm", "ML-DSA-87")
	out := meshca(t, "inspect", signChain(t, dir, "catalyst"))
	require.Contains(t, out, "    Post-quantum:          profile Catalyst hybrid (classical signature + alternative post-quantum signature)\n")
	require.Contains(t, out, "    Post-quantum:          alt signature (2.5.29.73/.74) ML-DSA-87 (2.16.840.1.101.3.4.3.19): pure ML-DSA, empty context, 4627-byte signature\n")
	require.Contains(t, out, "    Post-quantum:          alt public key (2.5.29.72, non-critical) ML-DSA-87 (2.16.840.1.101.3.4.3.19): 2592-byte public key, NIST category 5\n")
}

func TestPQ_InspectTLSShowsX25519MLKEM768FromServe(t *testing.T) {
	dir := initProfileCA(t, "catalyst")
	s := startServe(t, dir)
	s.waitReady(t, 10*time.Second)
	out := meshca(t, "inspect", "--tls", s.grpc, "--server-name", "localhost", "--roots", filepath.Join(dir, "root-cert.pem"))
	require.Contains(t, out, "TLS connection to "+s.grpc+"\n")
	require.Contains(t, out, "    Version:               TLS 1.3\n")
	require.Contains(t, out, "    Key exchange group:    X25519MLKEM768 (0x11EC), post-quantum hybrid key exchange\n")
	require.Contains(t, out, "    Peer chain:            verified against "+filepath.Join(dir, "root-cert.pem")+"\n")
	require.Contains(t, out, "Peer certificate chain (2):\n")
	require.Contains(t, out, "    DNS SAN:               localhost\n")
	require.Contains(t, out, "    Post-quantum:          alt signature (2.5.29.73/.74) ML-DSA-65", "the serving certificate is Catalyst too")
}

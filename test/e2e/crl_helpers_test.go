package e2e

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fetchCRL GETs a DER CRL from the distribution point of s.
func (s *server) fetchCRL(t *testing.T, name string) *x509.RevocationList {
	t.Helper()
	resp, err := http.Get("http://" + s.ops + "/crl/" + name)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", name, b)
	require.Equal(t, "application/pkix-crl", resp.Header.Get("Content-Type"))
	l, err := x509.ParseRevocationList(b)
	require.NoError(t, err)
	return l
}

func lists(l *x509.RevocationList, serial string) bool {
	for _, e := range l.RevokedCertificateEntries {
		if hex.EncodeToString(e.SerialNumber.Bytes()) == serial {
			return true
		}
	}
	return false
}

// signLeaf has meshca sign a workload certificate (through the running
// serve's admin socket when one runs) and returns the chain: leaf,
// intermediate, root.
func signLeaf(t *testing.T, dir, id string) []*x509.Certificate {
	t.Helper()
	csr := writeCSR(t, t.TempDir(), id)
	chain := splitPEM(t, meshca(t, "sign", "--dir", dir, "--csr", csr, "--identity", id))
	require.Len(t, chain, 3)
	return chain
}

func serialOf(c *x509.Certificate) string { return hex.EncodeToString(c.SerialNumber.Bytes()) }

// sigterm stops s gracefully and waits.
func (s *server) sigterm(t *testing.T) {
	t.Helper()
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, <-s.done)
	s.done <- nil
}

// opensslVerifyCRLs runs openssl verify -crl_check_all (a CRL for every
// certificate of the chain) with exactly caCRL; it returns openssl's
// output and whether it accepted leaf.
func opensslVerifyCRLs(t *testing.T, caCRL []byte, rootCert, inter, leaf *x509.Certificate) (string, bool) {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, b, 0o600))
		return p
	}
	pemOf := func(c *x509.Certificate) []byte {
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	out, err := exec.Command("openssl", "verify", "-crl_check_all",
		"-CAfile", write("root.pem", pemOf(rootCert)), "-untrusted", write("inter.pem", pemOf(inter)),
		"-CRLfile", write("ca-crl.pem", caCRL), write("leaf.pem", pemOf(leaf))).CombinedOutput()
	return string(out), err == nil
}

// requireVerdicts checks openssl's verdict on each (leaf, accepted?) with caCRL.
func requireVerdicts(t *testing.T, what string, caCRL []byte, rootCert *x509.Certificate, cases map[string]verdict) {
	t.Helper()
	for name, v := range cases {
		out, ok := opensslVerifyCRLs(t, caCRL, rootCert, v.chain[1], v.chain[0])
		if v.accept {
			require.True(t, ok, "%s, %s: openssl should accept: %s", what, name, out)
		} else {
			require.False(t, ok, "%s, %s: openssl should reject: %s", what, name, out)
			require.Contains(t, out, "certificate revoked", "%s, %s", what, name)
		}
	}
}

type verdict struct {
	chain  []*x509.Certificate
	accept bool
}

// setYAML replaces old with new in the meshca.yaml of dir.
func setYAML(t *testing.T, dir, old, new string) {
	t.Helper()
	p := filepath.Join(dir, "meshca.yaml")
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	require.True(t, bytes.Contains(b, []byte(old)), "meshca.yaml has no %q:\n%s", old, b)
	require.NoError(t, os.WriteFile(p, []byte(strings.Replace(string(b), old, new, 1)), 0o644))
}

func appendYAML(t *testing.T, dir, s string) {
	t.Helper()
	p := filepath.Join(dir, "meshca.yaml")
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(p, append(b, []byte(s)...), 0o644))
}

// waitFor polls cond every 10 ms until it holds or within passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

package e2e

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// meshcaFails runs the binary, expects a non-zero exit and returns the
// combined output.
func meshcaFails(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(meshcaBin, args...).CombinedOutput()
	require.Error(t, err, "meshca %v should fail: %s", args, out)
	return string(out)
}

// stopServe sends SIGTERM and waits for a clean exit.
func stopServe(t *testing.T, s *server) {
	t.Helper()
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-s.done:
		require.NoError(t, err, s.logs())
		s.done <- nil // for the cleanup
	case <-time.After(20 * time.Second):
		t.Fatal("meshca serve did not stop within 20s of SIGTERM")
	}
}

func cliRequester(t *testing.T) string {
	t.Helper()
	u, err := user.Current()
	require.NoError(t, err)
	return "cli:" + u.Username
}

// TestCLI_WorksWhileServeRuns: records list, sign and records show go
// through the running service's admin socket and print exactly what they
// print against a stopped service.
func TestCLI_WorksWhileServeRuns(t *testing.T) {
	dir := initCA(t)
	tmp := t.TempDir()
	csr := writeCSR(t, tmp, workloadID)
	s := startServe(t, dir)
	s.waitReady(t, 5*time.Second)

	// serve issued its own serving certificate before it was ready: the
	// only record so far.
	before := strings.Split(strings.TrimSuffix(meshca(t, "records", "list", "--dir", dir), "\n"), "\n")
	require.Len(t, before, 2, before)
	require.Equal(t, []string{"SERIAL", "IDENTITY", "NOT", "AFTER", "PROFILE", "GEN", "REQUESTER"}, strings.Fields(before[0]))
	require.Equal(t, []string{"dns:meshca.istio-system.svc", "serving"}, []string{strings.Fields(before[1])[1], strings.Fields(before[1])[3]})

	out := meshca(t, "sign", "--dir", dir, "--csr", csr, "--identity", workloadID, "--ttl", "1h")
	certs := splitPEM(t, out)
	require.Len(t, certs, 3)
	require.Equal(t, []string{workloadID}, []string{certs[0].URIs[0].String()})
	chainPath := filepath.Join(tmp, "chain.pem")
	require.NoError(t, os.WriteFile(chainPath, []byte(out), 0o644))
	o, err := exec.Command("openssl", "verify", "-x509_strict", "-CAfile", filepath.Join(dir, "root-cert.pem"),
		"-untrusted", chainPath, chainPath).CombinedOutput()
	require.NoError(t, err, string(o))
	require.Equal(t, chainPath+": OK\n", string(o))
	serial := hex.EncodeToString(certs[0].SerialNumber.Bytes())

	// The same policy as offline: a foreign identity is refused with the
	// same message, and nothing is recorded.
	refused := meshcaFails(t, "sign", "--dir", dir, "--csr", csr, "--identity", "spiffe://cluster.local/ns/other/sa/app")
	require.Contains(t, refused, "do not equal the authenticated identity")

	list := meshca(t, "records", "list", "--dir", dir)
	lines := strings.Split(strings.TrimSuffix(list, "\n"), "\n")
	require.Len(t, lines, 3, list)
	var signed []string
	for _, l := range lines[1:] {
		if f := strings.Fields(l); f[0] == serial {
			signed = f
		}
	}
	require.NotNil(t, signed, list)
	require.Equal(t, workloadID, signed[1])
	require.Equal(t, cliRequester(t), signed[5])
	listJSON := meshca(t, "records", "list", "--dir", dir, "--json")
	show := meshca(t, "records", "show", serial, "--dir", dir)
	var rec struct{ Serial, Identity, Requester string }
	require.NoError(t, json.Unmarshal([]byte(show), &rec))
	require.Equal(t, serial, rec.Serial)
	require.Equal(t, workloadID, rec.Identity)
	require.Equal(t, cliRequester(t), rec.Requester, "the requester is the socket peer, as offline")
	missing := meshcaFails(t, "records", "show", "00ff", "--dir", dir)

	// The issuance went through the service's audit log.
	require.Eventually(t, func() bool {
		return strings.Contains(s.logs(), `"msg":"certificate.issued"`) && strings.Contains(s.logs(), serial)
	}, 5*time.Second, 20*time.Millisecond, s.logs())

	// cacerts takes the public files from the socket, which never serves a
	// key, and reads the key file itself (TestCACerts_WhileServeRuns...).
	cacertsOut := meshca(t, "cacerts", "--dir", dir, "--out", filepath.Join(tmp, "cacerts"))
	require.Equal(t, "Wrote Istio cacerts for generation 1 to "+filepath.Join(tmp, "cacerts")+": [ca-cert.pem ca-key.pem cert-chain.pem root-cert.pem]\n", cacertsOut)

	stopServe(t, s)
	_, err = os.Stat(filepath.Join(dir, "admin.sock"))
	require.ErrorIs(t, err, os.ErrNotExist, "serve removes its socket on shutdown")

	// Offline, the same commands print the same bytes.
	require.Equal(t, list, meshca(t, "records", "list", "--dir", dir))
	require.Equal(t, listJSON, meshca(t, "records", "list", "--dir", dir, "--json"))
	require.Equal(t, show, meshca(t, "records", "show", serial, "--dir", dir))
	require.Equal(t, missing, meshcaFails(t, "records", "show", "00ff", "--dir", dir))
	require.Equal(t, errorLine(t, refused), errorLine(t, meshcaFails(t, "sign", "--dir", dir, "--csr", csr, "--identity", "spiffe://cluster.local/ns/other/sa/app")))
}

// errorLine is the "Error: ..." line cobra prints (the offline path also
// logs, with timestamps, to stderr).
func errorLine(t *testing.T, out string) string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "Error: ") {
			return l
		}
	}
	t.Fatalf("no Error: line in %q", out)
	return ""
}

// adminClient talks HTTP over the admin socket.
func adminClient(sock string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
}

func TestAdminSocket_OwnerOnlyAndBadRequestsChangeNothing(t *testing.T) {
	dir := initCA(t)
	sock := filepath.Join(dir, "admin.sock")
	// A stale socket left by a killed serve is replaced at start.
	l, err := net.Listen("unix", sock)
	require.NoError(t, err)
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	require.NoError(t, l.Close())

	s := startServe(t, dir)
	s.waitReady(t, 5*time.Second)
	fi, err := os.Stat(sock)
	require.NoError(t, err)
	require.Equal(t, os.ModeSocket, fi.Mode().Type())
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	c := adminClient(sock)
	for _, tc := range []struct {
		name, body string
		want       int
	}{
		{"not JSON", "{not json", http.StatusBadRequest},
		{"unknown field", `{"identity":"` + workloadID + `","csr":"","bogus":1}`, http.StatusBadRequest},
		{"no CSR", `{"identity":"` + workloadID + `"}`, http.StatusBadRequest},
		{"foreign trust domain", `{"identity":"spiffe://evil.example/ns/default/sa/app","csr":"AAAA"}`, http.StatusBadRequest},
		{"too large", `{"identity":"` + workloadID + `","csr":"` + strings.Repeat("A", 1<<20) + `"}`, http.StatusRequestEntityTooLarge},
	} {
		resp, err := c.Post("http://meshca/v1/sign", "application/json", strings.NewReader(tc.body))
		require.NoError(t, err, tc.name)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, tc.want, resp.StatusCode, "%s: %s", tc.name, b)
	}
	resp, err := c.Get("http://meshca/v1/sign")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)

	// Only serve's own serving certificate is recorded.
	recorded := meshca(t, "records", "list", "--dir", dir, "--json")
	require.Equal(t, 1, strings.Count(recorded, "\n"), recorded)
	require.Contains(t, recorded, `"profile":"serving"`, "bad requests recorded nothing")
	stopServe(t, s)
	_, err = os.Stat(sock)
	require.ErrorIs(t, err, os.ErrNotExist)
}

// TestCLI_WhileServeRunsDoesNotWaitForTheStoreLock: with serve running,
// each command asks its admin socket first, instead of opening the bbolt
// store that serve holds and waiting out the lock timeout (2 s) before it
// falls back to the socket.
func TestCLI_WhileServeRunsDoesNotWaitForTheStoreLock(t *testing.T) {
	dir := initCA(t)
	tmp := t.TempDir()
	csr := writeCSR(t, tmp, workloadID)
	s := startServe(t, dir)
	s.waitReady(t, 5*time.Second)
	for _, args := range [][]string{
		{"records", "list", "--dir", dir},
		{"sign", "--dir", dir, "--csr", csr, "--identity", workloadID, "--ttl", "1h"},
		{"cacerts", "--dir", dir, "--out", filepath.Join(tmp, "cacerts")},
		{"revocations", "list", "--dir", dir},
		{"status", "--dir", dir},
	} {
		start := time.Now()
		meshca(t, args...)
		// A command that opened the store first takes at least the lock
		// timeout.
		took := time.Since(start)
		require.Less(t, took, 2*time.Second, "meshca %s took %s", strings.Join(args[:2], " "), took)
		t.Logf("meshca %s: %s", strings.Join(args[:2], " "), took.Round(time.Millisecond))
	}
}

// TestCLI_StoreLockedByAnotherCommandSaysSo: when the lock holder is not a
// serve (another CLI command), the error says so and names the socket.
func TestCLI_StoreLockedByAnotherCommandSaysSo(t *testing.T) {
	dir := initCA(t)
	meshca(t, "records", "list", "--dir", dir) // creates the store
	// flock(1) holds the same flock(2) lock bbolt takes.
	holder := exec.Command("flock", "--exclusive", filepath.Join(dir, "meshca.db"), "sleep", "60")
	require.NoError(t, holder.Start())
	t.Cleanup(func() { _ = holder.Process.Kill(); _ = holder.Wait() })
	require.Eventually(t, func() bool {
		return exec.Command("flock", "--exclusive", "--nonblock", filepath.Join(dir, "meshca.db"), "true").Run() != nil
	}, 5*time.Second, 20*time.Millisecond)

	out := errorLine(t, meshcaFails(t, "records", "list", "--dir", dir))
	require.Equal(t, "Error: store "+filepath.Join(dir, "meshca.db")+" is locked by another meshca process, and no meshca serve answers on its admin socket "+
		filepath.Join(dir, "admin.sock")+": if another meshca command holds the store, wait for it and retry", out)
}

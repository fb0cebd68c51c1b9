package durability

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/test/syncorder"
)

// signTraced runs `bin sign` under strace on a fresh CA and returns the
// trace, the store path, the serial it printed.
func signTraced(t *testing.T, bin string) (*syncorder.Trace, string, string) {
	t.Helper()
	dir, storePath := initCA(t)
	csr, _ := writeCSR(t, t.TempDir(), workloadID)
	trace := filepath.Join(t.TempDir(), "sign.strace")
	cmd, err := syncorder.Command(trace, bin, "sign", "--dir", dir, "--csr", csr, "--identity", workloadID)
	require.NoError(t, err, "strace must be installed (make deps)")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), stderr.String())
	serial, err := leafSerial(stdout.String())
	require.NoError(t, err)
	tr, err := syncorder.ParseFile(trace)
	require.NoError(t, err)
	return tr, storePath, serial
}

// printsChain selects meshca sign's acknowledgement: the chain on stdout.
func printsChain(c syncorder.Call) bool {
	return c.IsWrite() && c.FD == 1 && c.Contains("-----BEGIN CERTIFICATE-----")
}

func TestSign_PrintsTheChainOnlyAfterTheRecordIsFsynced(t *testing.T) {
	tr, storePath, serial := signTraced(t, meshcaBin)
	c, err := tr.DurableBeforeReply(storePath, syncorder.RecordMarker(serial), printsChain)
	require.NoError(t, err)
	require.True(t, c.Journal, "the record is durable in the issuance journal")
	// The audit line is written after the record is durable (it never
	// reports an issuance that a power loss could undo) and before the
	// chain is printed (every acknowledged certificate is audited).
	audit, ok := tr.First(c.Durable.Exit, auditLine(serial))
	require.True(t, ok, "no certificate.issued audit line for %s after its commit", serial)
	require.Less(t, audit.Exit, c.Reply.Entry, "the audit line precedes the acknowledgement")
}

func TestSign_CheckReportsAStoreWithoutFsync(t *testing.T) {
	tr, storePath, serial := signTraced(t, noSyncBin)
	_, err := tr.DurableBeforeReply(storePath, syncorder.RecordMarker(serial), printsChain)
	require.ErrorContains(t, err, "but not fsynced before the acknowledgement")
	require.ErrorContains(t, err, "write on pipe:[")
}

const concurrentIssuances = 8

// serveTraced starts `bin serve` under strace on a fresh CA, issues
// concurrentIssuances certificates through IstioCertificateService, each
// on its own connection, stops the server and returns the trace.
func serveTraced(t *testing.T, bin string) (*syncorder.Trace, string, []issuance) {
	t.Helper()
	dir, storePath := initCA(t)
	// The client certificate comes from the CA itself, before serve locks the store.
	csr, keyPEM := writeCSR(t, t.TempDir(), workloadID)
	clientChain, err := exec.Command(meshcaBin, "sign", "--dir", dir, "--csr", csr, "--identity", workloadID).Output()
	require.NoError(t, err)
	rootPEM, err := os.ReadFile(filepath.Join(dir, "root-cert.pem"))
	require.NoError(t, err)

	s := startTracedServe(t, bin, dir)
	got := issueConcurrently(t, concurrentIssuances, s.grpc, rootPEM, clientChain, keyPEM)
	return s.stop(t), storePath, got
}

func TestServe_RepliesToEachIstioRequestOnlyAfterItsRecordIsFsynced(t *testing.T) {
	tr, storePath, got := serveTraced(t, meshcaBin)
	commits := map[int]bool{}
	for _, is := range got {
		c, err := tr.DurableBeforeReply(storePath, syncorder.RecordMarker(is.serial), is.reply)
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(c.Reply.Path, "TCP:["), "the reply is a socket write: %s", c.Reply.Path)
		require.True(t, c.Journal, "the record is durable in the issuance journal")
		audit, ok := tr.First(c.Durable.Exit, auditLine(is.serial))
		require.True(t, ok, "no certificate.issued audit line for %s after its commit", is.serial)
		require.Less(t, audit.Exit, c.Reply.Entry, "the audit line precedes the reply")
		commits[c.Durable.Exit] = true
	}
	t.Logf("%d replies after %d journal syncs", len(got), len(commits))
}

func TestServe_CheckReportsAStoreWithoutFsync(t *testing.T) {
	tr, storePath, got := serveTraced(t, noSyncBin)
	for _, is := range got {
		_, err := tr.DurableBeforeReply(storePath, syncorder.RecordMarker(is.serial), is.reply)
		require.ErrorContains(t, err, "but not fsynced before the acknowledgement", "serial %s", is.serial)
		require.ErrorContains(t, err, "write on TCP:[")
	}
}

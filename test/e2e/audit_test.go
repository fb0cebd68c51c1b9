package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// auditVerify runs 'meshca audit verify' and returns its stdout and
// whether it exited 0.
func auditVerify(t *testing.T, args ...string) (string, bool) {
	t.Helper()
	cmd := exec.Command(meshcaBin, append([]string{"audit", "verify"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		var exit *exec.ExitError
		require.ErrorAs(t, err, &exit, "meshca audit verify: %s", stderr.String())
	}
	return stdout.String(), err == nil
}

// auditKinds lists the kind, event or reason, and identity of every record of file.
func auditKinds(t *testing.T, file string) []string {
	t.Helper()
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	var out []string
	for _, line := range bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) {
		var r struct{ Kind, Event, Reason, Identity string }
		require.NoError(t, json.Unmarshal(line, &r), "%s", line)
		out = append(out, strings.TrimSpace(r.Kind+" "+r.Event+r.Reason+" "+r.Identity))
	}
	return out
}

// serve with audit.file writes every decision to a hash-chained file that
// 'meshca audit verify' checks while serve runs, sealed after SIGTERM with
// a checkpoint signed by the intermediate (chained to root-cert.pem), and
// continued after a restart; a deleted line is named.
func TestAudit_ServeWritesAVerifiableChainAcrossRestarts(t *testing.T) {
	dir := initCA(t)
	appendYAML(t, dir, "audit:\n  file: audit/audit.log\n  checkpointInterval: 1s\n  flushInterval: 50ms\n")
	file := filepath.Join(dir, "audit", "audit.log")
	roots := filepath.Join(dir, "root-cert.pem")
	csr := writeCSR(t, t.TempDir(), workloadID)

	s := startServe(t, dir)
	s.waitReady(t, 10*time.Second)
	meshca(t, "sign", "--dir", dir, "--csr", csr, "--identity", workloadID) // through the admin socket
	waitFor(t, 10*time.Second, "a signed checkpoint after the issuance", func() bool {
		b, _ := os.ReadFile(file)
		return bytes.Contains(b, []byte(`"event":"certificate.issued"`)) && bytes.Contains(b, []byte(`"reason":"interval"`))
	})
	out, ok := auditVerify(t, "--roots", roots, file)
	require.True(t, ok, out)
	require.Contains(t, out, "checkpoint certificates chain to --roots")
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	require.Contains(t, string(b), `"alt_sig":"`, "the default (catalyst) intermediate signs checkpoints with its ML-DSA key too")
	out, ok = auditVerify(t, "--sealed", file)
	require.False(t, ok, "a running meshca's log is not sealed:\n%s", out)
	stopServe(t, s)

	out, ok = auditVerify(t, "--roots", roots, "--sealed", file)
	require.True(t, ok, out)
	require.Contains(t, out, "sealed: the series ends with meshca's shutdown checkpoint")
	require.Contains(t, out, "signed by: ")
	st, err := os.Stat(file)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode())
	st, err = os.Stat(filepath.Dir(file))
	require.NoError(t, err)
	require.Equal(t, os.ModeDir|0o700, st.Mode())

	s = startServe(t, dir)
	s.waitReady(t, 10*time.Second)
	meshca(t, "sign", "--dir", dir, "--csr", csr, "--identity", workloadID)
	stopServe(t, s)
	out, ok = auditVerify(t, "--roots", roots, "--sealed", file)
	require.True(t, ok, out)
	kinds := auditKinds(t, file)
	require.Equal(t, "start", kinds[0])
	require.Contains(t, kinds, "restart")
	require.Equal(t, "checkpoint shutdown", kinds[len(kinds)-1])
	n := 0
	for _, k := range kinds {
		if k == "event certificate.issued "+workloadID {
			n++
		}
	}
	require.Equal(t, 2, n, "one issuance per run: %v", kinds)

	// Delete the third record: named, non-zero exit.
	b, err = os.ReadFile(file)
	require.NoError(t, err)
	lines := bytes.SplitAfter(b, []byte("\n"))
	require.NoError(t, os.WriteFile(file, bytes.Join(append(lines[:2:2], lines[3:]...), nil), 0o600))
	out, ok = auditVerify(t, "--roots", roots, file)
	require.False(t, ok)
	require.Contains(t, out, "FAIL "+file+" line 3 (seq 3): seq 4 follows seq 2: record(s) 3..3 are missing (deleted)")

	// The other tamperings of the log serve wrote, each named at its record
	// (one file, no rotation: line n holds seq n).
	issued := -1
	for i, l := range lines {
		if bytes.Contains(l, []byte(`"event":"certificate.issued"`)) && bytes.Contains(l, []byte(workloadID)) {
			issued = i
			break
		}
	}
	require.Positive(t, issued, "the workload's issuance record")
	last := len(lines) - 1
	if len(lines[last]) == 0 { // SplitAfter's empty tail
		last--
	}
	at := func(i int, what string) string {
		return fmt.Sprintf("FAIL %s line %d (seq %d): %s", file, i+1, i+1, what)
	}
	tamper := map[string]struct {
		edit  func() [][]byte
		flags []string
		want  string
	}{
		"one byte of an issuance edited": {edit: func() [][]byte {
			ls := cloneLines(lines)
			j := bytes.Index(ls[issued], []byte(workloadID))
			ls[issued][j+len(workloadID)-1] = 'X' // ".../sa/apX"
			return ls
		}, want: at(issued, "the record was altered")},
		"two lines swapped": {edit: func() [][]byte {
			ls := cloneLines(lines)
			ls[issued], ls[issued+1] = ls[issued+1], ls[issued]
			return ls
		}, want: at(issued, fmt.Sprintf("records out of order: seq %d comes before seq %d (lines %d and %d were swapped)", issued+2, issued+1, issued+1, issued+2))},
		"cut in the middle of the last record": {edit: func() [][]byte {
			ls := cloneLines(lines[:last+1])
			ls[last] = ls[last][:len(ls[last])/2]
			return ls
		}, want: at(last, "incomplete last record")},
		"cut at a line boundary (the shutdown checkpoint gone)": {edit: func() [][]byte {
			return cloneLines(lines[:last])
		}, flags: []string{"--sealed"}, want: at(last-1, "the log does not end with a shutdown checkpoint")},
	}
	for name, c := range tamper {
		require.NoError(t, os.WriteFile(file, bytes.Join(c.edit(), nil), 0o600))
		out, ok := auditVerify(t, append(append([]string{"--roots", roots}, c.flags...), file)...)
		require.False(t, ok, "%s: verify passed:\n%s", name, out)
		require.Contains(t, out, c.want, name)
	}
}

func cloneLines(ls [][]byte) [][]byte {
	out := make([][]byte, len(ls))
	for i, l := range ls {
		out[i] = bytes.Clone(l)
	}
	return out
}

func TestAudit_VerifyHelpHasExamples(t *testing.T) {
	for _, c := range [][]string{{"audit"}, {"audit", "verify"}} {
		out := meshca(t, append(c, "--help")...)
		require.Contains(t, out, "Examples:", c)
	}
	out := meshca(t, "audit", "verify", "--help")
	require.Contains(t, out, "Examples:")
	require.Contains(t, out, "--roots")
}

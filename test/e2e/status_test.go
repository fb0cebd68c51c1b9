package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/rotation"
)

// statusDoc is the part of 'meshca status -o json' these tests read.
type statusDoc struct {
	GeneratedAt  time.Time `json:"generatedAt"`
	Certificates []struct {
		Kind, Name, State, Serial, Subject, Health string
	} `json:"certificates"`
	Bundles []struct {
		Kind, Name, Health string
		Certificates       int
	} `json:"bundles"`
	CRLs []struct {
		Scope  string `json:"scope"`
		Delta  bool   `json:"delta"`
		Health string `json:"health"`
	} `json:"crls"`
	Rotation json.RawMessage `json:"rotation"`
	Alerts   json.RawMessage `json:"alerts"`
}

// caRows are the rows of the CA CERTIFICATES table, split into fields.
func caRows(t *testing.T, out string) [][]string {
	t.Helper()
	_, after, ok := strings.Cut(out, "\nCA CERTIFICATES\n")
	require.True(t, ok, out)
	block, _, _ := strings.Cut(after, "\n\n")
	var rows [][]string
	for _, l := range strings.Split(block, "\n")[1:] {
		rows = append(rows, strings.Fields(l))
	}
	return rows
}

// TestStatus_ThroughTheAdminSocketTCPAndTheStore: meshca status shows the
// root and the active intermediate with their expiry and health and the
// served CRLs, through the admin socket while serve runs, through the
// admin TCP listener with an admin client certificate, and from the store
// once serve has stopped; it is plain when piped and coloured only with
// --color=always.
func TestStatus_ThroughTheAdminSocketTCPAndTheStore(t *testing.T) {
	dir := initCA(t)
	const alice = "spiffe://cluster.local/ns/meshca-admins/sa/alice"
	appendYAML(t, dir, "server:\n  adminListen: 127.0.0.1:0\n  adminIdentities: [\""+alice+"\"]\n")
	s := startServe(t, dir)
	s.waitReady(t, 10*time.Second)
	chain := signLeaf(t, dir, workloadID)
	inter, root := chain[1], chain[len(chain)-1]

	var doc statusDoc
	require.NoError(t, json.Unmarshal([]byte(meshca(t, "status", "--dir", dir, "-o", "json")), &doc))
	type cert struct{ kind, name, state, serial, health string }
	var got []cert
	for _, c := range doc.Certificates {
		got = append(got, cert{c.Kind, c.Name, c.State, c.Serial, c.Health})
	}
	require.Equal(t, []cert{{"root", "root", "", serialOf(root), "ok"}, {"intermediate", "gen-1", "active", serialOf(inter), "ok"}}, got)
	require.Len(t, doc.Bundles, 1)
	require.Equal(t, "root", doc.Bundles[0].Name)
	require.NotEmpty(t, doc.CRLs)
	scopes := map[string]bool{}
	for _, c := range doc.CRLs {
		require.Equal(t, "ok", c.Health, c.Scope)
		scopes[c.Scope] = true
	}
	require.True(t, scopes["gen-1"], "%v", scopes)
	// Both rotating controllers report: the intermediate is idle until
	// intermediate.prepareThreshold (0.5) of its lifetime, the root idle.
	var rot []rotation.Status
	require.NoError(t, json.Unmarshal(doc.Rotation, &rot))
	require.Len(t, rot, 2)
	require.Equal(t, [2]string{rotation.CAIntermediate, "idle"}, [2]string{rot[0].CA, rot[0].Phase})
	require.Equal(t, 0, rot[0].PhaseCode)
	prepareAt := inter.NotBefore.Add(inter.NotAfter.Sub(inter.NotBefore) / 2)
	require.WithinDuration(t, prepareAt, rot[0].Next, time.Second)
	require.Equal(t, [3]any{rotation.CARoot, "idle", 0}, [3]any{rot[1].CA, rot[1].Phase, rot[1].PhaseCode})
	require.Equal(t, "[]", string(doc.Alerts))
	require.WithinDuration(t, time.Now(), doc.GeneratedAt, time.Minute)

	// The table, piped: no escape sequences; the expiry in days.
	out := meshca(t, "status", "--dir", dir)
	require.NotContains(t, out, "\x1b")
	rootDays := int(root.NotAfter.Sub(doc.GeneratedAt).Hours() / 24)
	interDays := int(inter.NotAfter.Sub(doc.GeneratedAt).Hours() / 24)
	stamp := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	wantRows := [][]string{
		append([]string{"root", "root", "-", stamp(root.NotAfter), "in", strconv.Itoa(rootDays) + "d", "ok", serialOf(root)}, strings.Fields(root.Subject.String())...),
		append([]string{"intermediate", "gen-1", "active", stamp(inter.NotAfter), "in", strconv.Itoa(interDays) + "d", "ok", serialOf(inter)}, strings.Fields(inter.Subject.String())...),
	}
	require.Equal(t, wantRows, caRows(t, out))
	require.Contains(t, out, "server:             running (answered through its admin endpoint)\n")
	_, rotBlock, ok := strings.Cut(out, "\nROTATION\n")
	require.True(t, ok, out)
	rotBlock, _, _ = strings.Cut(rotBlock, "\n\n")
	rotLines := strings.Split(rotBlock, "\n")
	require.Len(t, rotLines, 3, rotBlock)
	require.Equal(t, []string{"intermediate", "idle", "ok"}, strings.Fields(rotLines[1])[:3])
	require.Equal(t, []string{"root", "idle", "ok"}, strings.Fields(rotLines[2])[:3])
	require.Contains(t, out, "\nALERTS\nnone firing\n")

	// NO_COLOR does not override an explicit --color=always.
	cmd := exec.Command(meshcaBin, "status", "--dir", dir, "--color=always")
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	coloured, err := cmd.Output()
	require.NoError(t, err)
	require.Contains(t, string(coloured), "\x1b[32mok\x1b[0m")
	require.NotContains(t, meshca(t, "status", "--dir", dir, "--color=auto"), "\x1b")
	require.Equal(t, `Error: --color "yes": use auto, always or never`, errorLine(t, meshcaFails(t, "status", "--dir", dir, "--color", "yes")))

	// The admin TCP listener, with an admin client certificate.
	csr, key := writeCSRWithKey(t, t.TempDir(), alice)
	tmp := t.TempDir()
	cp, kp := filepath.Join(tmp, "alice.pem"), filepath.Join(tmp, "alice.key")
	require.NoError(t, os.WriteFile(cp, []byte(meshca(t, "sign", "--dir", dir, "--csr", csr, "--identity", alice, "--ttl", "1h")), 0o600))
	require.NoError(t, os.WriteFile(kp, key, 0o600))
	remote := meshca(t, "status", "--admin-address", s.adminAddress(t), "--ca", filepath.Join(dir, "root-cert.pem"), "--server-name", "localhost", "--cert", cp, "--key", kp)
	require.Equal(t, wantRows, caRows(t, remote))
	require.Contains(t, remote, "\nCRLS\nSCOPE ")

	// Stopped: from the store, the same certificates; no CRLs; the root
	// rotation as journaled (none).
	s.sigterm(t)
	out = meshca(t, "status", "--dir", dir)
	require.Contains(t, out, "server:             not running (read from the store)\n")
	require.Equal(t, wantRows, caRows(t, out))
	require.Contains(t, out, "\nCRLS\nnone: meshca serve builds and serves the CRLs\n")
	_, rotBlock, ok = strings.Cut(out, "\nROTATION\n")
	require.True(t, ok, out)
	rotBlock, _, _ = strings.Cut(rotBlock, "\n\n")
	rotLines = strings.Split(rotBlock, "\n")
	require.Len(t, rotLines, 2, rotBlock)
	require.Equal(t, []string{"root", "idle"}, strings.Fields(rotLines[1])[:2])
}

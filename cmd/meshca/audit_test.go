package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/audit"
	"github.com/meshca/meshca/ca/root"
)

// writeAuditLog writes a sealed audit file of n issuances signed by a
// fresh self-signed CA and returns its path and the CA's PEM file.
func writeAuditLog(t *testing.T, n int) (string, string) {
	t.Helper()
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ca, err := root.NewSelfSignedRoot(key, "audit cli test", "meshca", time.Hour, time.Now().Add(-time.Minute))
	require.NoError(t, err)
	rootsFile := filepath.Join(dir, "root.pem")
	require.NoError(t, os.WriteFile(rootsFile, root.EncodePEM(ca), 0o600))
	path := filepath.Join(dir, "audit", "audit.log")
	f, err := audit.OpenFile(audit.FileOptions{Path: path})
	require.NoError(t, err)
	f.SetKey(func() (audit.CheckpointKey, error) {
		return audit.CheckpointKey{Signer: key, Chain: []*x509.Certificate{ca}}, nil
	})
	al := audit.New(slog.New(f.Tee(slog.DiscardHandler)))
	for range n {
		al.Issued(context.Background(), audit.Decision{Identity: "spiffe://cluster.local/ns/default/sa/app"})
	}
	require.NoError(t, f.Close())
	return path, rootsFile
}

func TestAuditVerify_ExitCodeAndReport(t *testing.T) {
	path, roots := writeAuditLog(t, 3)
	out, err := runMeshca(t, "audit", "verify", "--roots", roots, "--sealed", path)
	require.NoError(t, err, out)
	require.Contains(t, out, "OK 1 file(s), 5 records (seq 1..5), 1 signed checkpoint(s)")
	require.Contains(t, out, "sealed: the series ends with meshca's shutdown checkpoint")

	// Cut in the middle of the last record: named, after a second look.
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, b[:len(b)-20], 0o600))
	out, err = runMeshca(t, "audit", "verify", path)
	require.ErrorContains(t, err, "audit log broken: "+path+" line 5 (seq 5): incomplete last record")
	require.Contains(t, out, "FAIL "+path+" line 5 (seq 5)")
	require.Contains(t, out, "the 4 records before it verify (seq 1..4, 0 checkpoints)")

	_, err = runMeshca(t, "audit", "verify")
	require.ErrorContains(t, err, "requires at least 1 arg")
	_, err = runMeshca(t, "audit", "verify", "--roots", path, path)
	require.ErrorContains(t, err, "--roots ")
}

// A hostile file's checkpoint certificate (self-signed: without --roots
// it verifies) may name itself with terminal control sequences: the
// report prints them escaped.
func TestAuditReport_EscapesControlCharacters(t *testing.T) {
	var out strings.Builder
	printAuditReport(&out, &audit.Report{Files: 1, Records: 2, Checkpoints: 1, Signers: []string{"CN=evil\x1b]0;pwned\x07\x1b[2J\u009b2J"}}, false)
	require.Contains(t, out.String(), "signed by: CN=evil?]0;pwned??[2J?2J\n")
}

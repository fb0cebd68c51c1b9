package audit

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/ca/certenc"
	"github.com/meshca/meshca/ca/pqc"
	"github.com/meshca/meshca/ca/root"
)

var testNow = time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)

// testCA is a root and the intermediate that signs checkpoints.
type testCA struct {
	root, inter *x509.Certificate
	key         crypto.Signer
	alt         certenc.AlgorithmSigner // catalyst only
	rootKey     crypto.Signer
}

func newKey(t testing.TB, alg string) crypto.Signer {
	t.Helper()
	var k crypto.Signer
	var err error
	switch alg {
	case "EC-P256":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "EC-P384":
		k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "RSA":
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case "Ed25519":
		_, k, err = ed25519.GenerateKey(rand.Reader)
	default:
		k, err = pqc.GenerateKey(alg, rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newTestCA makes a root and an intermediate of key algorithm alg (the
// root is ML-DSA too for an ML-DSA intermediate: a pure post-quantum
// chain); "catalyst" is an EC P-256 intermediate with an ML-DSA-65
// alternative key.
func newTestCA(t testing.TB, alg string) testCA {
	t.Helper()
	rootAlg := "EC-P256"
	if strings.HasPrefix(alg, "ML-DSA") || strings.HasPrefix(alg, "MLDSA") {
		rootAlg = alg
	}
	rk := newKey(t, rootAlg)
	rc, err := root.NewRoot(root.CAKey{Signer: rk}, "audit test root", "meshca", 48*time.Hour, testNow.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var alt certenc.AlgorithmSigner
	if alg == "catalyst" {
		alg, alt = "EC-P256", newKey(t, "ML-DSA-65").(certenc.AlgorithmSigner)
	}
	ik := newKey(t, alg)
	ic, err := root.Mint(rc, root.CAKey{Signer: rk}, root.CAKey{Signer: ik, Alt: alt}, root.IntermediateTemplate{CommonName: "audit test intermediate", Organization: "meshca", Lifetime: 24 * time.Hour}, testNow.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return testCA{root: rc, inter: ic, key: ik, alt: alt, rootKey: rk}
}

// sibling is another EC P-256 intermediate, named cn, under c's root (as a
// plug-in cluster's or a signer's own intermediate is).
func (c testCA) sibling(t testing.TB, cn string) testCA {
	t.Helper()
	ik := newKey(t, "EC-P256")
	ic, err := root.Mint(c.root, root.CAKey{Signer: c.rootKey}, root.CAKey{Signer: ik}, root.IntermediateTemplate{CommonName: cn, Organization: "meshca", Lifetime: 24 * time.Hour}, testNow.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return testCA{root: c.root, inter: ic, key: ik, rootKey: c.rootKey}
}

func (c testCA) source() KeySource {
	return func() (CheckpointKey, error) {
		return CheckpointKey{Signer: c.key, Alt: c.alt, Chain: []*x509.Certificate{c.inter}}, nil
	}
}

// testLog is an audit file under test with the audit Logger writing to it.
type testLog struct {
	t    *testing.T
	path string
	clk  *clocktesting.FakeClock
	file *File
	al   *Logger
	// plain is a process logger on the same handler: not audit.
	plain *slog.Logger
	proc  *bytes.Buffer // the process log (level error)
}

func openLog(t *testing.T, path string, ca testCA, maxSize int64) *testLog {
	t.Helper()
	l := &testLog{t: t, path: path, clk: clocktesting.NewFakeClock(testNow), proc: &bytes.Buffer{}}
	f, err := OpenFile(FileOptions{Path: path, MaxSize: maxSize, Clock: l.clk, CheckpointInterval: time.Minute,
		FlushInterval: time.Second, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	f.SetKey(ca.source())
	l.file = f
	proc := slog.NewJSONHandler(l.proc, &slog.HandlerOptions{Level: slog.LevelError})
	l.plain = slog.New(f.Tee(proc))
	l.al = New(l.plain)
	return l
}

// issue writes n issuance events.
func (l *testLog) issue(n int) {
	for i := range n {
		l.al.Issued(context.Background(), Decision{Identity: "spiffe://cluster.local/ns/default/sa/app" + string(rune('a'+i%26)),
			Requester: "istio", Serial: "0a0b0c", Profile: "classical", Generation: 1, NotAfter: "2026-12-07T05:00:00Z"})
	}
}

func (l *testLog) checkpoint() {
	l.file.mu.Lock()
	defer l.file.mu.Unlock()
	l.file.checkpointLocked(CheckpointInterval)
}

func (l *testLog) close() {
	if err := l.file.Close(); err != nil {
		l.t.Fatal(err)
	}
}

// crash stops the file the way a killed process leaves it: what was
// written stays, no shutdown checkpoint.
func (l *testLog) crash() {
	f := l.file
	f.closeOnce.Do(func() {
		close(f.stop)
		<-f.done
		f.mu.Lock()
		defer f.mu.Unlock()
		f.flushLocked()
		f.closed = true
		f.f.Close()
		f.lock.Close() // the process is gone: so is its lock
	})
}

// standardLog writes the log most tests tamper with:
//
//	line 1 start, 2-6 events, 7 checkpoint, 8-12 events, 13 shutdown checkpoint.
func standardLog(t *testing.T, ca testCA) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit", "audit.log")
	l := openLog(t, path, ca, 0)
	l.issue(5)
	l.checkpoint()
	l.issue(5)
	l.close()
	return path
}

func readLines(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(b, []byte("\n"))
}

func writeLines(t *testing.T, path string, lines [][]byte) {
	t.Helper()
	if err := os.WriteFile(path, bytes.Join(lines, nil), 0o600); err != nil {
		t.Fatal(err)
	}
}

// wantProblem checks that verification fails at exactly file/line/seq with
// a message containing what.
func wantProblem(t *testing.T, rep *Report, file string, line int, seq uint64, what string) {
	t.Helper()
	p := rep.Problem
	if p == nil {
		t.Fatalf("verification passed; want a problem at %s line %d (seq %d)", file, line, seq)
	}
	if filepath.Base(p.File) != filepath.Base(file) || p.Line != line || p.Seq != seq || !strings.Contains(p.What, what) {
		t.Fatalf("problem = %v; want %s line %d (seq %d) containing %q", p, filepath.Base(file), line, seq, what)
	}
}

func wantOK(t *testing.T, rep *Report) {
	t.Helper()
	if rep.Problem != nil {
		t.Fatalf("verification failed: %v", rep.Problem)
	}
}

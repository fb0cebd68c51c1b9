package audit

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	clocktesting "k8s.io/utils/clock/testing"
)

// poll waits for cond, with a deadline.
func poll(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		runtime.Gosched()
	}
}

func lastRecord(t *testing.T, path string) *record {
	t.Helper()
	lines := readLines(t, path)
	r, err := parseRecord(bytes.TrimSuffix(lines[len(lines)-2], []byte("\n")))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func recordAt(t *testing.T, path string, line int) *record {
	t.Helper()
	r, err := parseRecord(bytes.TrimSuffix(readLines(t, path)[line-1], []byte("\n")))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestFile_PermissionsAndStartRecord(t *testing.T) {
	ca := newTestCA(t, "EC-P256")
	path := standardLog(t, ca)
	for p, want := range map[string]os.FileMode{path: 0o600, filepath.Dir(path): 0o700 | os.ModeDir} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode() != want {
			t.Fatalf("%s mode %v; want %v", p, st.Mode(), want)
		}
	}
	r := recordAt(t, path, 1)
	if r.Kind != KindStart || *r.Seq != 1 || r.Prev != strings.Repeat("0", 64) {
		t.Fatalf("first record %+v", r)
	}
}

// The audit file gets every audit event even when the process log is
// set to errors only, and nothing that is not an audit event.
func TestFile_TeeWritesAuditEventsOnly(t *testing.T) {
	ca := newTestCA(t, "EC-P256")
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, path, ca, 0)
	l.issue(2)
	l.plain.Info("not audit")  // below the process log's level
	l.plain.Error("not audit") // in the process log only
	l.close()
	if got := l.proc.String(); strings.Count(got, "\n") != 1 || !strings.Contains(got, `"msg":"not audit"`) {
		t.Fatalf("process log (level error) got %q", got)
	}
	lines := readLines(t, path)
	if len(lines) != 5 { // start, 2 events, shutdown checkpoint, ""
		t.Fatalf("%d lines: %s", len(lines), bytes.Join(lines, nil))
	}
	var ev map[string]any
	if err := json.Unmarshal(lines[1], &ev); err != nil {
		t.Fatal(err)
	}
	if ev["kind"] != "event" || ev["event"] != EventIssued || ev["log"] != "audit" || ev["identity"] != "spiffe://cluster.local/ns/default/sa/appa" || ev["msg"] != EventIssued {
		t.Fatalf("event record %v", ev)
	}
}

func TestFile_CheckpointEveryIntervalWhenThereAreRecords(t *testing.T) {
	ca := newTestCA(t, "EC-P256")
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, path, ca, 0)
	l.issue(3)
	// Records are buffered: nothing but the start record is in the file yet.
	if n := len(readLines(t, path)); n != 2 {
		t.Fatalf("%d lines before the flush interval", n-1)
	}
	poll(t, l.clk.HasWaiters) // the ticker is set
	l.clk.Step(time.Minute)
	// The gauge is set before the tick's flush writes the checkpoint:
	// wait for the line itself.
	poll(t, func() bool { return len(readLines(t, path)) == 6 }) // start, 3 events, checkpoint, ""
	if got := testutil.ToFloat64(l.file.m.checkpointSeq); got != 5 {
		t.Fatalf("checkpoint sequence gauge %v; want 5", got)
	}
	r := recordAt(t, path, 5)
	if r.Kind != KindCheckpoint || r.Reason != CheckpointInterval {
		t.Fatalf("line 5 %+v", r)
	}
	// With no new records, no further checkpoint.
	l.clk.Step(time.Minute)
	l.close()
	if r := recordAt(t, path, 6); r.Kind != KindCheckpoint || r.Reason != CheckpointShutdown {
		t.Fatalf("line 6 %+v", r)
	}
	wantOK(t, Verify([]string{path}, VerifyOptions{Roots: []*x509.Certificate{ca.root}, Sealed: true}))
}

func TestFile_RestartContinuesTheChain(t *testing.T) {
	ca := newTestCA(t, "EC-P256")
	path := standardLog(t, ca) // 13 records, sealed
	l := openLog(t, path, ca, 0)
	l.issue(2)
	l.close()
	r := recordAt(t, path, 14)
	if r.Kind != KindRestart || *r.Seq != 14 || r.PreviousClean == nil || !*r.PreviousClean {
		t.Fatalf("line 14 %+v", r)
	}
	h := sha256.Sum256(bytes.TrimSuffix(readLines(t, path)[12], []byte("\n")))
	if r.Prev != hex.EncodeToString(h[:]) {
		t.Fatalf("restart prev %s; want the hash of line 13", r.Prev)
	}
	rep := Verify([]string{path}, VerifyOptions{Roots: []*x509.Certificate{ca.root}, Sealed: true})
	wantOK(t, rep)
	if rep.Records != 17 || len(rep.Notes) != 0 {
		t.Fatalf("report %+v", rep)
	}
}

// After a crash mid-write the torn line is not extended: the file is
// moved aside as it is, and the new file's restart record acknowledges it.
func TestFile_RestartAfterTornWrite(t *testing.T) {
	ca := newTestCA(t, "EC-P256")
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, path, ca, 0)
	l.issue(3)
	l.crash()
	torn := []byte(`{"seq":5,"prev":"ab`)
	fh, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fh.Write(torn) //nolint:errcheck
	fh.Close()
	before, _ := os.ReadFile(path)

	l = openLog(t, path, ca, 0)
	l.issue(1)
	l.close()
	aside := path + ".00000000000000000001"
	if got, _ := os.ReadFile(aside); !bytes.Equal(got, before) {
		t.Fatalf("the torn file was not kept as it was:\n%s", got)
	}
	r := recordAt(t, path, 1)
	h := sha256.Sum256(torn)
	if r.Kind != KindRestart || *r.Seq != 5 || r.PreviousClean == nil || *r.PreviousClean || r.TornBytes != len(torn) ||
		r.TornSHA256 != hex.EncodeToString(h[:]) || r.PreviousFile != filepath.Base(aside) {
		t.Fatalf("restart record %+v", r)
	}
	rep := Verify([]string{aside, path}, VerifyOptions{Roots: []*x509.Certificate{ca.root}, Sealed: true})
	wantOK(t, rep)
	if len(rep.Notes) != 2 || !strings.Contains(rep.Notes[0], "torn record of 19 bytes") {
		t.Fatalf("notes %q", rep.Notes)
	}
	// The new file alone: it starts mid-chain, its torn predecessor not given.
	rep = Verify([]string{path}, VerifyOptions{Roots: []*x509.Certificate{ca.root}, Sealed: true})
	wantOK(t, rep)
	if len(rep.Notes) == 0 || !strings.Contains(rep.Notes[0], "the series starts at seq 5") {
		t.Fatalf("notes %q", rep.Notes)
	}
	// The torn file alone, as the last of a series: named.
	wantProblem(t, Verify([]string{aside}, VerifyOptions{}), aside, 5, 5, "incomplete last record")
	// Another tail than the one acknowledged: named.
	os.WriteFile(aside, append(before[:len(before)-1:len(before)-1], 'X'), 0o600) //nolint:errcheck
	wantProblem(t, Verify([]string{aside, path}, VerifyOptions{}), path, 1, 5, "does not acknowledge")
}

func TestFile_RestartAfterCrashSaysUnclean(t *testing.T) {
	ca := newTestCA(t, "EC-P256")
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, path, ca, 0)
	l.issue(2)
	l.crash()
	l = openLog(t, path, ca, 0)
	l.close()
	r := recordAt(t, path, 4)
	if r.Kind != KindRestart || r.PreviousClean == nil || *r.PreviousClean {
		t.Fatalf("line 4 %+v", r)
	}
	rep := Verify([]string{path}, VerifyOptions{Sealed: true})
	wantOK(t, rep)
	if len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "line 4 (seq 4): meshca restarted after a run that did not end") {
		t.Fatalf("notes %q", rep.Notes)
	}
}

func TestFile_RotationChainsFiles(t *testing.T) {
	ca := newTestCA(t, "EC-P256")
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	l := openLog(t, path, ca, 4096)
	l.issue(40)
	l.close()
	l = openLog(t, path, ca, 4096) // a restart after rotations continues too
	l.issue(5)
	l.close()
	files, err := filepath.Glob(path + ".*")
	if err != nil || len(files) < 3 {
		t.Fatalf("rotated files %v, %v", files, err)
	}
	series := append(files, path)
	rep := Verify(series, VerifyOptions{Roots: []*x509.Certificate{ca.root}, Sealed: true})
	wantOK(t, rep)
	if rep.Records != 1+40+1+1+5+1+2*len(files) || rep.Files != len(series) {
		t.Fatalf("report %+v over %d rotated files", rep, len(files))
	}
	for _, f := range files {
		st, _ := os.Stat(f)
		if st.Mode() != 0o600 || st.Size() > 4096+4096 {
			t.Fatalf("%s: mode %v size %d", f, st.Mode(), st.Size())
		}
		if r := lastRecord(t, f); r.Kind != KindCheckpoint || r.Reason != CheckpointRotate {
			t.Fatalf("%s ends with %+v; want its rotate checkpoint", f, r)
		}
	}
	second := recordAt(t, files[1], 1)
	if second.Kind != KindRotated || second.PreviousFile != filepath.Base(files[0]) {
		t.Fatalf("%s starts with %+v", files[1], second)
	}
	// A file left out of the series, or the series out of order: named.
	wantProblem(t, Verify(append([]string{files[0]}, files[2:]...), VerifyOptions{}), files[2], 1, *recordAt(t, files[1], 1).Seq, "missing (deleted)")
	swapped := append([]string{files[1], files[0]}, files[2:]...)
	rep = Verify(append(swapped, path), VerifyOptions{})
	if rep.Problem == nil || rep.Problem.File != files[0] || rep.Problem.Line != 1 {
		t.Fatalf("problem %v; want %s line 1", rep.Problem, files[0])
	}
	// A rotated file cut at a line boundary (its rotate checkpoint gone).
	lines := readLines(t, files[0])
	writeLines(t, files[0], lines[:len(lines)-2])
	wantProblem(t, Verify(series, VerifyOptions{}), files[1], 1, *lastRecord(t, files[0]).Seq+1, "missing (deleted)")
}

func TestFile_RotationKeepsMaxFiles(t *testing.T) {
	ca := newTestCA(t, "EC-P256")
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, path, ca, 2048)
	l.file.o.MaxFiles = 2
	l.issue(60)
	l.close()
	files, _ := filepath.Glob(path + ".*")
	if len(files) != 2 {
		t.Fatalf("rotated files %v; want 2", files)
	}
	rep := Verify(append(files, path), VerifyOptions{Roots: []*x509.Certificate{ca.root}, Sealed: true})
	wantOK(t, rep)
	if rep.FirstSeq == 1 || len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "the series starts at seq") {
		t.Fatalf("report %+v", rep)
	}
}

// The checkpoint signature verifies with openssl, independently of Go.
func TestCheckpoint_VerifiesWithOpenSSL(t *testing.T) {
	ca := newTestCA(t, "EC-P256")
	path := standardLog(t, ca)
	r := recordAt(t, path, 7)
	dir := t.TempDir()
	sig, err := base64.StdEncoding.DecodeString(r.Signature)
	if err != nil {
		t.Fatal(err)
	}
	der, err := base64.StdEncoding.DecodeString(r.Chain[0])
	if err != nil {
		t.Fatal(err)
	}
	msg := filepath.Join(dir, "msg")
	files := map[string][]byte{
		msg:                              CheckpointMessage(*r.Seq, r.Prev, r.Time, r.Reason),
		filepath.Join(dir, "sig"):        sig,
		filepath.Join(dir, "signer.pem"): pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
	}
	for p, b := range files {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if want := "meshca audit checkpoint v1\nseq=7\nprev=" + r.Prev + "\ntime=" + r.Time + "\nreason=interval\n"; string(files[msg]) != want {
		t.Fatalf("message %q", files[msg])
	}
	run := func(args ...string) string {
		out, err := exec.Command("openssl", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	run("x509", "-in", filepath.Join(dir, "signer.pem"), "-pubkey", "-noout", "-out", filepath.Join(dir, "pub.pem"))
	if out := run("dgst", "-sha256", "-verify", filepath.Join(dir, "pub.pem"), "-signature", filepath.Join(dir, "sig"), msg); strings.TrimSpace(out) != "Verified OK" {
		t.Fatalf("openssl: %s", out)
	}
	run("verify", "-CAfile", writePEM(t, dir, ca.root), "-attime", "1796533200", filepath.Join(dir, "signer.pem")) // testNow
	// A message of another seq does not verify.
	os.WriteFile(msg, CheckpointMessage(*r.Seq+1, r.Prev, r.Time, r.Reason), 0o600) //nolint:errcheck
	if out, err := exec.Command("openssl", "dgst", "-sha256", "-verify", filepath.Join(dir, "pub.pem"), "-signature", filepath.Join(dir, "sig"), msg).CombinedOutput(); err == nil {
		t.Fatalf("openssl verified a changed message: %s", out)
	}
}

func writePEM(t *testing.T, dir string, c *x509.Certificate) string {
	t.Helper()
	p := filepath.Join(dir, "root.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// One chain, one writer: a second meshca on the same file is refused.
func TestFile_SecondWriterRefused(t *testing.T) {
	ca := newTestCA(t, "EC-P256")
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, path, ca, 0)
	_, err := OpenFile(FileOptions{Path: path})
	if err == nil || !strings.Contains(err.Error(), "is written by another process") {
		t.Fatalf("second OpenFile: %v", err)
	}
	l.close()
	l = openLog(t, path, ca, 0) // free again after Close
	l.close()
	wantOK(t, Verify([]string{path}, VerifyOptions{Sealed: true}))
}

// A crash while writing the first record after a rotation leaves a file
// with only a torn line: the chain continues from the rotated file, and
// the torn file is kept and acknowledged.
func TestFile_RestartAfterTornFirstLineAfterRotation(t *testing.T) {
	ca := newTestCA(t, "EC-P256")
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, path, ca, 4096)
	l.issue(12)
	l.crash()
	rotated, _ := filepath.Glob(path + ".*")
	if len(rotated) == 0 {
		t.Fatal("no rotation")
	}
	prevLast := lastRecord(t, rotated[len(rotated)-1])
	torn := []byte(`{"seq":` + strconv.FormatUint(*prevLast.Seq+1, 10) + `,"prev":"0a`)
	if err := os.WriteFile(path, torn, 0o600); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, path, ca, 4096)
	l.close()
	all, _ := filepath.Glob(path + ".*")
	if len(all) != len(rotated)+1 {
		t.Fatalf("files %v; want the torn file kept next to %v", all, rotated)
	}
	r := recordAt(t, path, 1)
	if r.Kind != KindRestart || *r.Seq != *prevLast.Seq+1 || r.TornBytes != len(torn) {
		t.Fatalf("restart record %+v after seq %d", r, *prevLast.Seq)
	}
	wantOK(t, Verify(append(all, path), VerifyOptions{Roots: []*x509.Certificate{ca.root}, Sealed: true}))
}

// A rotation that fails (the rotated name is taken) keeps writing to the
// current file and does not retry, with a checkpoint, on every event.
func TestFile_FailedRotationBacksOff(t *testing.T) {
	ca := newTestCA(t, "EC-P256")
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path+".00000000000000000001", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	l := openLog(t, path, ca, 4096)
	l.issue(40)
	l.close()
	rotates := 0
	for _, k := range readLines(t, path) {
		if bytes.Contains(k, []byte(`"reason":"rotate"`)) {
			rotates++
		}
	}
	if rotates == 0 || rotates > 12 || testutil.ToFloat64(l.file.m.writeErrors) != float64(rotates) {
		t.Fatalf("%d rotate checkpoints, %v write errors, for 40 events", rotates, testutil.ToFloat64(l.file.m.writeErrors))
	}
	wantOK(t, Verify([]string{path}, VerifyOptions{Roots: []*x509.Certificate{ca.root}, Sealed: true}))
}

// lockedBuffer is a log sink safe to read while the file's goroutine writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

// Until serve hands it the intermediate, the file has no key: the
// interval checkpoint is skipped (and retried an interval later, not at
// every flush), and the first checkpoint after SetKey covers everything.
func TestFile_NoKeyYetRetriesAnIntervalLater(t *testing.T) {
	ca := newTestCA(t, "EC-P256")
	path := filepath.Join(t.TempDir(), "audit.log")
	warnings := &lockedBuffer{}
	clk := clocktesting.NewFakeClock(testNow)
	f, err := OpenFile(FileOptions{Path: path, Clock: clk, CheckpointInterval: time.Minute, FlushInterval: time.Second,
		Log: slog.New(slog.NewTextHandler(warnings, nil))})
	if err != nil {
		t.Fatal(err)
	}
	al := New(slog.New(f.Tee(slog.NewJSONHandler(io.Discard, nil))))
	al.Issued(t.Context(), Decision{Identity: "spiffe://cluster.local/ns/a/sa/b"})
	poll(t, clk.HasWaiters)
	clk.Step(time.Minute) // the interval: no key
	poll(t, func() bool { return warnings.count("no checkpoint key yet") == 1 })
	for i := range 5 {
		// One more event, then a flush tick, which must have run when
		// the event is in the file: a flush, not another attempt.
		al.Issued(t.Context(), Decision{Identity: "spiffe://cluster.local/ns/a/sa/b"})
		clk.Step(time.Second)
		poll(t, func() bool { return len(readLines(t, path)) == i+4 }) // start, i+2 events, ""
	}
	f.SetKey(ca.source())
	clk.Step(time.Minute)
	poll(t, func() bool { return testutil.ToFloat64(f.m.checkpointSeq) == 8 })
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if n := warnings.count("no checkpoint key yet"); n != 1 {
		t.Fatalf("%d warnings; want 1", n)
	}
	wantOK(t, Verify([]string{path}, VerifyOptions{Roots: []*x509.Certificate{ca.root}, Sealed: true}))
}

// The process log keeps the audit lines it had: same line, with or
// without the file.
func TestFile_TeeKeepsTheProcessLogLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	f, err := OpenFile(FileOptions{Path: path, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	var with, without bytes.Buffer
	noTime := &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}
	d := Decision{Identity: "spiffe://cluster.local/ns/a/sa/b", Requester: "istio", Serial: "0a", Profile: "catalyst", Generation: 1}
	New(slog.New(f.Tee(slog.NewJSONHandler(&with, noTime)))).Issued(t.Context(), d)
	New(slog.New(slog.NewJSONHandler(&without, noTime))).Issued(t.Context(), d)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if with.String() != without.String() || !strings.Contains(with.String(), `"event":"certificate.issued"`) {
		t.Fatalf("process log with the file:\n%s\nwithout:\n%s", with.String(), without.String())
	}
}

package audit

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A revocation event carries its own "kind" member (leaf or
// intermediate): the record's kind must still be "event" for the
// verifier, and the file's line must not repeat the member name, which
// JSON tools resolve to the last one (RFC 8259 section 4: names SHOULD be
// unique).
func TestVerify_RevocationEventKeepsItsRecordKind(t *testing.T) {
	ca := newTestCA(t, "EC-P256")
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, path, ca, 0)
	l.issue(1)
	l.al.Revoked(context.Background(), Revocation{Serial: "0a0b", Kind: "leaf", Generation: 1, Identity: "spiffe://cluster.local/ns/default/sa/app",
		Known: true, Reason: "keyCompromise", RevokedAt: testNow, Requester: "admin", RecordedBy: "admin"})
	l.close()
	wantOK(t, Verify([]string{path}, VerifyOptions{Roots: []*x509.Certificate{ca.root}, Sealed: true, ExpectSeq: 4}))
	line := string(readLines(t, path)[2])
	if strings.Count(line, `"kind":`) != 1 || !strings.Contains(line, `"kind":"event"`) || !strings.Contains(line, `"event_kind":"leaf"`) {
		t.Fatalf("revocation record %s", line)
	}
}

// A record whose JSON says something other than its canonical head (a
// repeated seq, prev or kind member after it, or a member name in another
// case, which encoding/json matches too) is not a record meshca wrote.
func TestVerify_NonCanonicalHeadRefused(t *testing.T) {
	ca := newTestCA(t, "EC-P256")
	for name, edit := range map[string]func([]byte) []byte{
		"repeated seq":  func(b []byte) []byte { return bytes.Replace(b, []byte(`}`), []byte(`,"seq":99}`), 1) },
		"space in head": func(b []byte) []byte { return bytes.Replace(b, []byte(`{"seq":`), []byte(`{ "seq":`), 1) },
		"Kind": func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"reason"`), []byte(`"Kind":"event","reason"`), 1)
		},
	} {
		t.Run(name, func(t *testing.T) {
			path := standardLog(t, ca)
			lines := readLines(t, path)
			lines[12] = append(edit(bytes.TrimSuffix(lines[12], []byte("\n"))), '\n')
			writeLines(t, path, lines)
			wantProblem(t, Verify([]string{path}, VerifyOptions{}), path, 13, 13, "not a valid audit record")
		})
	}
}

// Only a CA certificate signs checkpoints (meshca's intermediate): a
// workload's certificate chains to the same root, and its key must not
// be able to re-seal a rewritten log.
func TestVerify_CheckpointByLeafCertificateRefused(t *testing.T) {
	ca := newTestCA(t, "EC-P256")
	path := standardLog(t, ca)
	lines := readLines(t, path)
	lk := newKey(t, "EC-P256")
	leaf, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(7), NotBefore: testNow.Add(-time.Hour), NotAfter: testNow.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true},
		ca.inter, lk.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	lc, err := x509.ParseCertificate(leaf)
	if err != nil {
		t.Fatal(err)
	}
	// A workload rewrites the log from line 7 on and seals it with its
	// own key and certificate chain.
	writeLines(t, path, lines[:6])
	l := openLog(t, path, testCA{root: ca.root, inter: lc, key: lk}, 0)
	l.file.SetKey(func() (CheckpointKey, error) {
		return CheckpointKey{Signer: lk, Chain: []*x509.Certificate{lc, ca.inter}}, nil
	})
	l.close()
	wantProblem(t, Verify([]string{path}, VerifyOptions{Roots: []*x509.Certificate{ca.root}}), path, 8, 8, "not a CA certificate")
}

// meshca's files each begin with a start, rotated or restart record:
// lines cut off the head of the oldest file given are a deletion, not a
// series that starts later.
func TestVerify_HeadOfFirstFileCut(t *testing.T) {
	ca := newTestCA(t, "EC-P256")
	path := standardLog(t, ca)
	lines := readLines(t, path)
	writeLines(t, path, lines[3:])
	wantProblem(t, Verify([]string{path}, VerifyOptions{Roots: []*x509.Certificate{ca.root}, Sealed: true}), path, 1, 4, "does not begin")

	// Cut back to a restart record in the middle of a file: that one
	// names no previous file.
	path = standardLog(t, ca)
	l := openLog(t, path, ca, 0)
	l.issue(2)
	l.close()
	lines = readLines(t, path)
	writeLines(t, path, lines[13:])
	if r := recordAt(t, path, 1); r.Kind != KindRestart {
		t.Fatalf("line 14 is %s", r.Kind)
	}
	wantProblem(t, Verify([]string{path}, VerifyOptions{Roots: []*x509.Certificate{ca.root}, Sealed: true}), path, 1, 14, "does not begin")
}

// After a crash that tore the first line of a fresh file, that file is
// moved aside under the seq its record would have had: the next file
// begins with the same seq, and its own rotation must still find a name.
func TestFile_RotationAfterTornFirstLine(t *testing.T) {
	ca := newTestCA(t, "EC-P256")
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, path, ca, 4096)
	l.issue(12)
	l.crash()
	prevLast := lastRecord(t, lastRotated(t, path))
	torn := []byte(`{"seq":` + strconv.FormatUint(*prevLast.Seq+1, 10) + `,"prev":"0a`)
	if err := os.WriteFile(path, torn, 0o600); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, path, ca, 4096)
	l.issue(12)
	l.close()
	if n := testutil.ToFloat64(l.file.m.writeErrors); n != 0 {
		t.Fatalf("%v write errors: the rotation after the torn file failed", n)
	}
	all, _ := filepath.Glob(path + ".*")
	wantOK(t, Verify(append(all, path), VerifyOptions{Roots: []*x509.Certificate{ca.root}, Sealed: true}))
}

func lastRotated(t *testing.T, path string) string {
	t.Helper()
	rotated, _ := filepath.Glob(path + ".*")
	if len(rotated) == 0 {
		t.Fatal("no rotation")
	}
	return rotated[len(rotated)-1]
}

// A hostile file of valid-looking restart records (anyone can compute
// the hashes) must not make verify keep a note per line.
func TestVerify_NotesAreBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	var b []byte
	var prev [32]byte
	line := appendHead(nil, 1, &prev, KindStart)
	line = appendTime(line, testNow)
	line = append(line, '}')
	for seq := uint64(1); seq <= 5000; seq++ {
		b = append(append(b, line...), '\n')
		prev = sha256.Sum256(line)
		line = appendHead(line[:0], seq+1, &prev, KindRestart)
		line = appendTime(line, testNow)
		line = append(line, `,"previous_clean":false}`...)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	rep := Verify([]string{path}, VerifyOptions{})
	wantOK(t, rep)
	if rep.Records != 5000 || len(rep.Notes) != maxNotes+1 || !strings.Contains(rep.Notes[maxNotes], "4979 more notes") {
		t.Fatalf("%d records, %d notes, last %q", rep.Records, len(rep.Notes), rep.Notes[len(rep.Notes)-1])
	}
}

// The interval checkpoint's fsync (seconds on a slow disk) must not hold
// the lock every audit write, and so every issuance, waits for.
func TestFile_CheckpointSyncDoesNotBlockWriters(t *testing.T) {
	ca := newTestCA(t, "EC-P256")
	l := openLog(t, filepath.Join(t.TempDir(), "audit.log"), ca, 0)
	entered, release := make(chan struct{}), make(chan struct{})
	var armed atomic.Bool
	fsync = func(w *os.File) error {
		if armed.CompareAndSwap(true, false) {
			close(entered)
			<-release
		}
		return w.Sync()
	}
	defer func() { fsync = (*os.File).Sync }()
	l.issue(1)
	armed.Store(true)
	poll(t, l.clk.HasWaiters)
	l.clk.Step(time.Minute)
	<-entered
	done := make(chan struct{})
	go func() {
		l.issue(1)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		close(release)
		t.Fatal("an audit write waited for the checkpoint's fsync")
	}
	close(release)
	l.close()
	wantOK(t, Verify([]string{l.path}, VerifyOptions{Roots: []*x509.Certificate{ca.root}, Sealed: true, ExpectSeq: 5}))
}

// --expect-seq is the seq of a checkpoint seen earlier: a log cut back
// before it and padded with fabricated records up to that seq (anyone
// can compute the hashes of unsigned records) must fail.
func TestVerify_ExpectSeqNeedsASignedCheckpoint(t *testing.T) {
	ca := newTestCA(t, "EC-P256")
	path := standardLog(t, ca)
	lines := readLines(t, path)
	kept := lines[:9] // seq 1..9: event 9 after the checkpoint at 7
	prev := sha256.Sum256(bytes.TrimSuffix(kept[8], []byte("\n")))
	body := bytes.TrimSuffix(kept[8], []byte("\n"))
	body = body[bytes.Index(body, []byte(`"time":`)):]
	for seq := uint64(10); seq <= 13; seq++ {
		line := append(appendHead(nil, seq, &prev, KindEvent), body...)
		prev = sha256.Sum256(line)
		kept = append(kept, append(line, '\n'))
	}
	writeLines(t, path, kept)
	wantProblem(t, Verify([]string{path}, VerifyOptions{Roots: []*x509.Certificate{ca.root}, ExpectSeq: 13}), path, 13, 13, "no signed checkpoint at or after seq 13")
	// The intact log passes.
	wantOK(t, Verify([]string{standardLog(t, ca)}, VerifyOptions{Roots: []*x509.Certificate{ca.root}, ExpectSeq: 13}))
}

// Caller text (a denial's message quotes the caller's input) is an
// escaped JSON string in the file: no newline, quote or invalid UTF-8
// splits or adds a record.
func TestFile_CallerInputStaysOneEscapedField(t *testing.T) {
	ca := newTestCA(t, "EC-P256")
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, path, ca, 0)
	evil := "x\"}\n{\"seq\":3,\"prev\":\"00\",\"kind\":\"checkpoint\"}\r\u2028\xff\x00"
	l.al.Denied(context.Background(), Decision{Requester: "istio", Reason: "authn_failed", Message: evil})
	l.close()
	lines := readLines(t, path)
	if len(lines) != 4 { // start, event, shutdown checkpoint, ""
		t.Fatalf("%d lines", len(lines)-1)
	}
	var ev struct{ Message string }
	if err := json.Unmarshal(lines[1], &ev); err != nil || ev.Message != strings.ToValidUTF8(evil, "\ufffd") {
		t.Fatalf("message %q (%v)", ev.Message, err)
	}
	wantOK(t, Verify([]string{path}, VerifyOptions{Roots: []*x509.Certificate{ca.root}, Sealed: true}))
}

// However long a field an event is given (a message quoting caller
// input), its record stays far below what verify and a restart read
// (maxLine): one oversized line would otherwise fail verify for good.
func TestFile_LongFieldIsCut(t *testing.T) {
	ca := newTestCA(t, "EC-P256")
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, path, ca, 0)
	l.al.Denied(context.Background(), Decision{Requester: "istio", Reason: "authn_failed", Message: strings.Repeat("é", maxLine)})
	l.close()
	lines := readLines(t, path)
	if len(lines[1]) > 2*maxField {
		t.Fatalf("event record of %d bytes", len(lines[1]))
	}
	var ev struct{ Message string }
	if err := json.Unmarshal(lines[1], &ev); err != nil || !strings.HasPrefix(ev.Message, strings.Repeat("é", maxField/2-1)) || !strings.HasSuffix(ev.Message, "… (cut: 2097152 bytes)") {
		t.Fatalf("message %.40q…%q (%v)", ev.Message, ev.Message[max(0, len(ev.Message)-40):], err)
	}
	wantOK(t, Verify([]string{path}, VerifyOptions{Roots: []*x509.Certificate{ca.root}, Sealed: true}))
}

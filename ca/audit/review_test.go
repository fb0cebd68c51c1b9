package audit

import (
	"bytes"
	"context"
	"crypto/x509"
	"path/filepath"
	"strings"
	"testing"
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

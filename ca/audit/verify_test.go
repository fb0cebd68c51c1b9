package audit

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestVerify_IntactLogVerifiesSealed(t *testing.T) {
	ca := newTestCA(t, "EC-P256")
	path := standardLog(t, ca)
	rep := Verify([]string{path}, VerifyOptions{Roots: []*x509.Certificate{ca.root}, Sealed: true, ExpectSeq: 13})
	wantOK(t, rep)
	if rep.Records != 13 || rep.FirstSeq != 1 || rep.LastSeq != 13 || rep.Checkpoints != 2 || !rep.Sealed || rep.Unsigned != 0 || rep.LastCheckpointSeq != 13 {
		t.Fatalf("report = %+v", rep)
	}
	if len(rep.Signers) != 1 || rep.Signers[0] != ca.inter.Subject.String() {
		t.Fatalf("signers = %v", rep.Signers)
	}
}

func TestVerify_EditedByteNamesTheRecord(t *testing.T) {
	ca := newTestCA(t, "EC-P256")
	path := standardLog(t, ca)
	lines := readLines(t, path)
	i := bytes.Index(lines[3], []byte("sa/app"))
	lines[3][i+3] = 'X' // line 4: "sa/Xpp"
	writeLines(t, path, lines)
	wantProblem(t, Verify([]string{path}, VerifyOptions{}), path, 4, 4, "the record was altered")
}

func TestVerify_EditedPrevNamesTheRecord(t *testing.T) {
	ca := newTestCA(t, "EC-P256")
	path := standardLog(t, ca)
	lines := readLines(t, path)
	i := bytes.Index(lines[4], []byte(`"prev":"`)) + len(`"prev":"`)
	if lines[4][i] == '0' { // line 5's prev: another hex digit
		lines[4][i] = '1'
	} else {
		lines[4][i] = '0'
	}
	writeLines(t, path, lines)
	wantProblem(t, Verify([]string{path}, VerifyOptions{}), path, 5, 5, "the record was altered: its prev does not match")
}

func TestVerify_DeletedLineNamesTheMissingRecord(t *testing.T) {
	ca := newTestCA(t, "EC-P256")
	path := standardLog(t, ca)
	lines := readLines(t, path)
	writeLines(t, path, append(lines[:3:3], lines[4:]...)) // delete line 4 (seq 4)
	wantProblem(t, Verify([]string{path}, VerifyOptions{}), path, 4, 4, "record(s) 4..4 are missing (deleted)")
}

func TestVerify_ReorderedLinesNamed(t *testing.T) {
	ca := newTestCA(t, "EC-P256")
	path := standardLog(t, ca)
	lines := readLines(t, path)
	lines[3], lines[4] = lines[4], lines[3] // swap lines 4 and 5
	writeLines(t, path, lines)
	wantProblem(t, Verify([]string{path}, VerifyOptions{}), path, 4, 4, "out of order: seq 5 comes before seq 4 (lines 4 and 5 were swapped)")
}

func TestVerify_TruncatedMidLine(t *testing.T) {
	ca := newTestCA(t, "EC-P256")
	path := standardLog(t, ca)
	lines := readLines(t, path)
	cut := append(lines[:8:8], lines[8][:len(lines[8])/2]) // lines 1-8 and half of 9
	writeLines(t, path, cut)
	rep := Verify([]string{path}, VerifyOptions{})
	wantProblem(t, rep, path, 9, 9, "incomplete last record")
	if !rep.Problem.IncompleteTail {
		t.Fatal("IncompleteTail not set")
	}
}

// A cut at a line boundary leaves a well-formed, shorter chain: the hash
// chain cannot tell. What can: the shutdown checkpoint that seals a
// stopped meshca's log (--sealed), and a seq remembered elsewhere
// (--expect-seq). Without either, Verify passes and reports the records
// after the last checkpoint as unsigned.
func TestVerify_TruncatedAtLineBoundary(t *testing.T) {
	ca := newTestCA(t, "EC-P256")
	path := standardLog(t, ca)
	lines := readLines(t, path)
	writeLines(t, path, lines[:10]) // lines 1-10: seq 11-13 gone, the shutdown checkpoint with them
	rep := Verify([]string{path}, VerifyOptions{})
	wantOK(t, rep)
	if rep.Sealed || rep.Unsigned != 3 || rep.LastCheckpointSeq != 7 || rep.LastSeq != 10 {
		t.Fatalf("report = %+v; want unsealed, 3 unsigned records after checkpoint 7", rep)
	}
	wantProblem(t, Verify([]string{path}, VerifyOptions{Sealed: true}), path, 10, 10, "does not end with a shutdown checkpoint")
	wantProblem(t, Verify([]string{path}, VerifyOptions{ExpectSeq: 13}), path, 10, 10, "no signed checkpoint at or after seq 13")
}

// rechain recomputes every prev after an edit, as a forger who can rewrite
// the whole file would, keeping the original checkpoints (whose signature
// they cannot remake).
func rechain(t *testing.T, lines [][]byte) {
	t.Helper()
	for i := 1; i < len(lines) && len(lines[i]) > 0; i++ {
		h := sha256.Sum256(bytes.TrimSuffix(lines[i-1], []byte("\n")))
		var r map[string]json.RawMessage
		if err := json.Unmarshal(lines[i], &r); err != nil {
			t.Fatal(err)
		}
		old := []byte(`"prev":` + string(r["prev"]))
		lines[i] = bytes.Replace(lines[i], old, []byte(`"prev":"`+hex.EncodeToString(h[:])+`"`), 1)
	}
}

func TestVerify_RewrittenChainCaughtByCheckpoint(t *testing.T) {
	ca := newTestCA(t, "EC-P256")
	path := standardLog(t, ca)
	lines := readLines(t, path)
	lines[2] = bytes.Replace(lines[2], []byte("sa/app"), []byte("sa/evil"), 1) // line 3
	rechain(t, lines)
	writeLines(t, path, lines)
	wantProblem(t, Verify([]string{path}, VerifyOptions{}), path, 7, 7, "checkpoint signature does not verify")
}

func TestVerify_ForgedCheckpointSignature(t *testing.T) {
	ca := newTestCA(t, "EC-P256")
	path := standardLog(t, ca)
	lines := readLines(t, path)
	var r record
	if err := json.Unmarshal(lines[6], &r); err != nil {
		t.Fatal(err)
	}
	sig := []byte(r.Signature)
	if sig[10] == 'A' { // another base64 digit
		sig[10] = 'B'
	} else {
		sig[10] = 'A'
	}
	lines[6] = bytes.Replace(lines[6], []byte(r.Signature), sig, 1)
	writeLines(t, path, lines[:7]) // the forged checkpoint is the last line: nothing after it links to it
	wantProblem(t, Verify([]string{path}, VerifyOptions{}), path, 7, 7, "checkpoint signature does not verify")
}

// A forger who rewrites the file and signs new checkpoints with a key of
// their own passes the signature check; --roots catches them.
func TestVerify_CheckpointByForeignKeyNeedsRoots(t *testing.T) {
	ca, forger := newTestCA(t, "EC-P256"), newTestCA(t, "EC-P256")
	path := standardLog(t, ca)
	lines := readLines(t, path)
	// Rebuild the log from line 7 on with the forger's key: the forger's
	// file continues the chain and seals it with their own checkpoints.
	writeLines(t, path, lines[:6])
	l := openLog(t, path, forger, 0)
	l.close()
	wantOK(t, Verify([]string{path}, VerifyOptions{}))
	wantProblem(t, Verify([]string{path}, VerifyOptions{Roots: []*x509.Certificate{ca.root}}), path, 8, 8, "does not chain to a trusted root")
}

// Another intermediate under the same root (a plug-in cluster's, whose key
// is in that cluster's cacerts Secret) passes --roots; pinning the
// checkpoint signer's common name catches it.
func TestVerify_CheckpointByAnotherIntermediateOfTheRootNeedsSignerPin(t *testing.T) {
	ca := newTestCA(t, "EC-P256")
	cluster := ca.sibling(t, "audit test intermediate cluster east")
	path := standardLog(t, ca)
	lines := readLines(t, path)
	writeLines(t, path, lines[:6])
	l := openLog(t, path, cluster, 0)
	l.close()
	roots := []*x509.Certificate{ca.root}
	wantOK(t, Verify([]string{path}, VerifyOptions{Roots: roots}))
	wantOK(t, Verify([]string{path}, VerifyOptions{Roots: roots, SignerCommonNames: []string{"audit test intermediate", "audit test intermediate cluster east"}}))
	wantProblem(t, Verify([]string{path}, VerifyOptions{Roots: roots, SignerCommonNames: []string{"audit test intermediate"}}), path, 8, 8,
		`checkpoint certificate "CN=audit test intermediate cluster east,O=meshca" is not one of the pinned signers (--signer-cn)`)
}

func TestVerify_KeyAlgorithms(t *testing.T) {
	for _, alg := range []string{"EC-P256", "EC-P384", "RSA", "Ed25519", "ML-DSA-65", "MLDSA65-ECDSA-P256-SHA512", "catalyst"} {
		t.Run(alg, func(t *testing.T) {
			ca := newTestCA(t, alg)
			path := standardLog(t, ca)
			wantOK(t, Verify([]string{path}, VerifyOptions{Roots: []*x509.Certificate{ca.root}, Sealed: true}))
			lines := readLines(t, path)
			lines[12] = bytes.Replace(lines[12], []byte(`"reason":"shutdown"`), []byte(`"reason":"interval"`), 1)
			writeLines(t, path, lines)
			wantProblem(t, Verify([]string{path}, VerifyOptions{}), path, 13, 13, "checkpoint signature does not verify")
		})
	}
}

func TestVerify_ChecksCertificateValidityAtCheckpointTime(t *testing.T) {
	ca := newTestCA(t, "EC-P256")
	path := standardLog(t, ca)
	lines := readLines(t, path)
	// Nothing else changes: a checkpoint claiming a time outside the
	// certificate's validity fails its signature (time is signed) first.
	lines[6] = bytes.Replace(lines[6], []byte(testNow.Format(time.RFC3339Nano)), []byte(testNow.Add(72*time.Hour).Format(time.RFC3339Nano)), 1)
	writeLines(t, path, lines)
	rep := Verify([]string{path}, VerifyOptions{Roots: []*x509.Certificate{ca.root}})
	if rep.Problem == nil || rep.Problem.Line != 7 || !strings.Contains(rep.Problem.What, "signature") {
		t.Fatalf("problem = %v", rep.Problem)
	}
}

func TestVerify_MissingFileIsAProblem(t *testing.T) {
	path := t.TempDir() + "/nope.log"
	rep := Verify([]string{path}, VerifyOptions{})
	if rep.Problem == nil || rep.Problem.File != path || !strings.Contains(rep.Problem.What, "no such file") {
		t.Fatalf("problem = %v", rep.Problem)
	}
}

func TestVerify_OverlongLineIsAProblem(t *testing.T) {
	ca := newTestCA(t, "EC-P256")
	path := standardLog(t, ca)
	lines := readLines(t, path)
	long := append(bytes.Repeat([]byte("x"), maxLine+10), '\n')
	writeLines(t, path, append(lines[:3:3], long))
	wantProblem(t, Verify([]string{path}, VerifyOptions{}), path, 4, 4, "a line longer than")
}

// A Catalyst intermediate signs each checkpoint twice: ECDSA and ML-DSA
// (its 2.5.29.72 key). Both must verify, and neither may be left out.
func TestCheckpoint_CatalystAltSignatureRequired(t *testing.T) {
	ca := newTestCA(t, "catalyst")
	path := standardLog(t, ca)
	r := recordAt(t, path, 13)
	if r.AltSignature == "" || r.AltAlgorithm == "" {
		t.Fatalf("catalyst checkpoint without an alternative signature: %+v", r)
	}
	wantOK(t, Verify([]string{path}, VerifyOptions{Roots: []*x509.Certificate{ca.root}, Sealed: true}))
	orig := readLines(t, path)

	lines := readLines(t, path)
	lines[12] = bytes.Replace(lines[12], []byte(`,"alt_alg":"`+r.AltAlgorithm+`","alt_sig":"`+r.AltSignature+`"`), nil, 1)
	writeLines(t, path, lines)
	wantProblem(t, Verify([]string{path}, VerifyOptions{}), path, 13, 13, "checkpoint has no alternative signature (alt_sig)")

	lines = orig
	other := recordAt(t, standardLog(t, ca), 13) // another valid ML-DSA signature, of another message
	lines[12] = bytes.Replace(lines[12], []byte(r.AltSignature), []byte(other.AltSignature), 1)
	writeLines(t, path, lines)
	wantProblem(t, Verify([]string{path}, VerifyOptions{}), path, 13, 13, "checkpoint alternative signature does not verify")
}

package audit

import (
	"bufio"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// VerifyOptions configure Verify.
type VerifyOptions struct {
	// Roots, when given, must be where every checkpoint's certificate
	// chains to (at the checkpoint's time). Without them a checkpoint is
	// checked only against the certificate it carries, which a forger
	// who rewrites the whole file could replace with their own.
	Roots []*x509.Certificate
	// Sealed requires the series to end with a shutdown checkpoint (a
	// log of a stopped meshca): then no record can be cut off its end.
	Sealed bool
	// ExpectSeq requires a signed checkpoint at or after this seq (e.g.
	// the meshca_audit_file_checkpoint_sequence seen earlier): unsigned
	// records after the last checkpoint could have been appended by
	// anyone.
	ExpectSeq uint64
	// SignerCommonNames, when given, are the only subject common names a
	// checkpoint's certificate may have (meshca's intermediate.commonName):
	// every intermediate under the same roots chains to them, including a
	// plug-in cluster's, whose key is in that cluster's cacerts Secret.
	SignerCommonNames []string
}

// Problem is the first broken record of a series.
type Problem struct {
	File string
	// Line is 1-based; Seq is the record's seq (or the missing one), 0
	// when unknown.
	Line int
	Seq  uint64
	What string
	// IncompleteTail: the last file ends in the middle of a record. It is
	// also what a reader may see while meshca is writing that record, so
	// a caller checking a live file may verify again a moment later.
	IncompleteTail bool
}

func (p *Problem) Error() string {
	if p.Seq == 0 {
		return fmt.Sprintf("%s line %d: %s", p.File, p.Line, p.What)
	}
	return fmt.Sprintf("%s line %d (seq %d): %s", p.File, p.Line, p.Seq, p.What)
}

// Report is what Verify found.
type Report struct {
	Files             int
	Records           int
	FirstSeq, LastSeq uint64
	Checkpoints       int
	// LastCheckpointSeq and LastCheckpointTime describe the last signed
	// checkpoint; Unsigned counts the records after it, which only the
	// hash chain covers until the next checkpoint.
	LastCheckpointSeq  uint64
	LastCheckpointTime string
	Unsigned           int
	// Sealed: the series ends with a shutdown checkpoint.
	Sealed bool
	// Signers are the subjects of the checkpoint certificates, in order.
	Signers []string
	// Notes are facts worth knowing that are not failures (restarts
	// after a crash, a series that starts after seq 1).
	Notes []string
	// Problem is the first broken record; nil when the series verifies.
	Problem *Problem
}

// Err returns Problem as an error, or nil.
func (r *Report) Err() error {
	if r.Problem == nil {
		return nil
	}
	return r.Problem
}

// verifier holds the chain state across the files of a series.
type verifier struct {
	o   VerifyOptions
	rep *Report
	// prevHash/prevSeq are those of the last record read; started is
	// false before the first one.
	started  bool
	prevHash [sha256.Size]byte
	prevSeq  uint64
	last     *record
	// tornLen/tornHash describe the previous file's torn tail, which the
	// next file's first record must acknowledge.
	tornLen  int
	tornHash string
	tornFile string
	// lastFile/lastLine locate the last record read.
	lastFile string
	lastLine int
	// moreNotes counts the notes beyond maxNotes.
	moreNotes int
}

// Verify checks a series of audit files (oldest first; a rotated series
// is Path.* then Path) end to end and names the first broken record.
func Verify(paths []string, o VerifyOptions) *Report {
	v := &verifier{o: o, rep: &Report{}}
	for i, p := range paths {
		r, err := os.Open(p)
		if err != nil {
			v.rep.Problem = &Problem{File: p, What: err.Error()}
			return v.rep
		}
		v.rep.Files++
		stop := v.file(p, bufio.NewReaderSize(r, 64<<10), i == len(paths)-1)
		r.Close()
		if stop {
			return v.rep
		}
	}
	v.end(paths)
	return v.rep
}

// maxNotes and maxSigners bound what a report keeps of a hostile file
// (a note per restart record, a signer per alternation).
const (
	maxNotes   = 20
	maxSigners = 20
)

// note adds a note, keeping the first maxNotes and counting the others.
func (v *verifier) note(format string, args ...any) {
	switch n := len(v.rep.Notes); {
	case n < maxNotes:
		v.rep.Notes = append(v.rep.Notes, fmt.Sprintf(format, args...))
		return
	case n == maxNotes:
		v.rep.Notes = append(v.rep.Notes, "")
	}
	v.moreNotes++
	v.rep.Notes[maxNotes] = fmt.Sprintf("%d more notes left out", v.moreNotes)
}

func (v *verifier) fail(file string, line int, seq uint64, format string, args ...any) bool {
	v.rep.Problem = &Problem{File: file, Line: line, Seq: seq, What: fmt.Sprintf(format, args...)}
	return true
}

// readLine reads one line without its "\n"; at the end of the file it
// returns the bytes after the last "\n" (a torn record) and io.EOF.
func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(line)+len(chunk) > maxLine+1 {
			return nil, fmt.Errorf("a line longer than %d bytes: not a meshca audit file", maxLine)
		}
		line = append(line, chunk...)
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return line, err
		}
	}
}

// file checks one file, streaming it with one line of lookahead; it
// reports whether a problem was found.
func (v *verifier) file(name string, r *bufio.Reader, lastFile bool) bool {
	cur, err := readLine(r)
	n := 0
	for err == nil {
		n++
		next, nerr := readLine(r)
		var la []byte // the next complete line, for naming the broken record
		if nerr == nil {
			la = next
		}
		if v.record(name, cur, la, n, n == 1) {
			return true
		}
		cur, err = next, nerr
	}
	if !errors.Is(err, io.EOF) {
		return v.fail(name, n+1, v.prevSeq+1, "%v", err)
	}
	torn := cur
	if v.tornLen > 0 && n == 0 {
		return v.fail(v.tornFile, 0, 0, "the file ends with a torn record (%d bytes without a newline) and the next file acknowledges nothing", v.tornLen)
	}
	if len(torn) > 0 {
		if lastFile {
			v.fail(name, n+1, v.prevSeq+1, "incomplete last record (%d bytes without a newline): the file was cut mid-record, or meshca crashed while writing it (its next start acknowledges such a tail in a restart record)", len(torn))
			v.rep.Problem.IncompleteTail = true
			return true
		}
		h := sha256.Sum256(torn)
		v.tornLen, v.tornHash, v.tornFile = len(torn), hex.EncodeToString(h[:]), name
	}
	return false
}

// record checks line n of a file; next is line n+1 (nil at the end) and
// first says it is the file's first line.
func (v *verifier) record(name string, line, next []byte, n int, first bool) bool {
	r, err := parseRecord(line)
	if err != nil {
		return v.fail(name, n, v.prevSeq+1, "not a valid audit record (the line was altered): %v", err)
	}
	seq := *r.Seq
	h := sha256.Sum256(line)
	if first && v.tornLen > 0 {
		if r.Kind != KindRestart || r.TornBytes != v.tornLen || r.TornSHA256 != v.tornHash {
			return v.fail(name, n, seq, "%s ends with a torn record (%d bytes, SHA-256 %s) that this first record does not acknowledge: a restart record with torn_bytes and torn_sha256 was expected", filepath.Base(v.tornFile), v.tornLen, v.tornHash)
		}
		v.note("%s ends with a torn record of %d bytes (a crash mid-write), acknowledged by %s line %d (seq %d)", v.tornFile, v.tornLen, name, n, seq)
		v.tornLen = 0
	} else if r.TornBytes > 0 && v.started {
		return v.fail(name, n, seq, "the restart record claims a torn tail of %d bytes, but the previous record ends its file cleanly", r.TornBytes)
	}
	// meshca begins every file with a start record, or a rotated or
	// restart record naming the file it continues; a restart record
	// without one is appended to an existing file. Any other first line
	// means lines were cut off the file's head.
	if first && r.Kind != KindStart && ((r.Kind != KindRotated && r.Kind != KindRestart) || r.PreviousFile == "") {
		return v.fail(name, n, seq, "the file does not begin with a start record or a rotated or restart record naming the file it continues: lines were cut off its head")
	}
	if !v.started {
		v.started = true
		v.rep.FirstSeq = seq
		if r.Kind == KindStart || seq == 1 {
			if seq != 1 || r.Prev != hex.EncodeToString(zeroHash[:]) {
				return v.fail(name, n, seq, "the first record of a chain must have seq 1 and a zero prev")
			}
		} else {
			v.note("the series starts at seq %d (%s line %d): the files before it are not given, so its link to them is not checked", seq, name, n)
		}
	} else {
		if seq != v.prevSeq+1 {
			return v.fail(name, n, v.prevSeq+1, "%s", v.seqProblem(next, n, seq))
		}
		if r.Prev != hex.EncodeToString(v.prevHash[:]) {
			return v.prevProblem(name, line, next, n, r)
		}
		if r.Kind == KindStart {
			return v.fail(name, n, seq, "a start record in the middle of a chain")
		}
	}
	if r.Kind == KindCheckpoint {
		c, err := checkCheckpoint(r, v.o.Roots, v.o.SignerCommonNames)
		if err != nil {
			return v.fail(name, n, seq, "%v: the checkpoint was forged, or records up to it were rewritten", err)
		}
		v.rep.Checkpoints++
		v.rep.LastCheckpointSeq, v.rep.LastCheckpointTime = seq, r.Time
		v.rep.Unsigned = 0
		if s := c.Subject.String(); len(v.rep.Signers) < maxSigners && (len(v.rep.Signers) == 0 || v.rep.Signers[len(v.rep.Signers)-1] != s) {
			v.rep.Signers = append(v.rep.Signers, s)
		}
	} else {
		v.rep.Unsigned++
	}
	if r.Kind == KindRestart && (r.PreviousClean == nil || !*r.PreviousClean) {
		v.note("%s line %d (seq %d): meshca restarted after a run that did not end with its shutdown checkpoint (a crash or kill, or the log was cut)", name, n, seq)
	}
	v.started, v.prevHash, v.prevSeq, v.last = true, h, seq, r
	v.lastFile, v.lastLine = name, n
	v.rep.Records++
	v.rep.LastSeq = seq
	return false
}

// seqProblem says what an unexpected seq means, looking at the next line.
func (v *verifier) seqProblem(nextLine []byte, n int, seq uint64) string {
	want := v.prevSeq + 1
	var next *record
	if nextLine != nil {
		next, _ = parseRecord(nextLine)
	}
	switch {
	case next != nil && seq > want && *next.Seq == want:
		return fmt.Sprintf("records out of order: seq %d comes before seq %d (lines %d and %d were swapped)", seq, want, n, n+1)
	case next != nil && *next.Seq == want+1:
		return fmt.Sprintf("seq %d where %d was expected: the record was altered", seq, want)
	case seq > want:
		return fmt.Sprintf("seq %d follows seq %d: record(s) %d..%d are missing (deleted)", seq, v.prevSeq, want, seq-1)
	default:
		return fmt.Sprintf("seq %d follows seq %d: records are out of order or repeated", seq, v.prevSeq)
	}
}

// prevProblem names the altered record when line i's prev does not match
// the previous record: the previous record was altered when line i is
// itself intact (a valid checkpoint, or the next line links to it).
func (v *verifier) prevProblem(name string, line, nextLine []byte, n int, r *record) bool {
	seq := *r.Seq
	intact := false
	if r.Kind == KindCheckpoint {
		_, err := checkCheckpoint(r, nil, nil)
		intact = err == nil
	} else if nextLine != nil {
		if next, err := parseRecord(nextLine); err == nil {
			h := sha256.Sum256(line)
			intact = next.Prev == hex.EncodeToString(h[:])
		}
	} else {
		intact = true // the last line: the previous one is the likelier edit
	}
	if !intact {
		return v.fail(name, n, seq, "the record was altered: its prev does not match the SHA-256 of the previous record, and the next record does not link to it either")
	}
	if n == 1 {
		return v.fail(name, 1, seq, "the first record does not link to the last record of the previous file (seq %d): that file was altered, or the files are not given in order", v.prevSeq)
	}
	return v.fail(name, n-1, v.prevSeq, "the record was altered: its SHA-256 no longer matches the prev of the next record (line %d, seq %d)", n, seq)
}

// end applies the checks on how the series ends.
func (v *verifier) end(paths []string) {
	if v.rep.Problem != nil {
		return
	}
	if !v.started {
		v.fail(paths[len(paths)-1], 0, 0, "no records")
		return
	}
	name, line := v.lastFile, v.lastLine
	v.rep.Sealed = v.last.Kind == KindCheckpoint && v.last.Reason == CheckpointShutdown
	// Records after the last checkpoint are unsigned: anyone can append
	// such records, so only a checkpoint reaches the expected seq.
	if v.o.ExpectSeq > v.rep.LastCheckpointSeq {
		v.fail(name, line, v.rep.LastSeq, "no signed checkpoint at or after seq %d (the last one is at seq %d, the log ends at seq %d): records were cut off the end, and any after seq %d may be made up", v.o.ExpectSeq, v.rep.LastCheckpointSeq, v.rep.LastSeq, v.rep.LastCheckpointSeq)
		return
	}
	if v.o.Sealed && !v.rep.Sealed {
		v.fail(name, line, v.rep.LastSeq, "the log does not end with a shutdown checkpoint: records were cut off the end, or meshca is still running or crashed")
	}
}

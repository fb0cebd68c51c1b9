package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// The audit file is JSON Lines: one JSON object per line, each ending in
// "\n". Every record starts with the same three members, in this order:
//
//	{"seq":N,"prev":"<hex SHA-256>","kind":"<kind>", ...}
//
// seq counts every record of the chain from 1, across restarts and
// rotated files; prev is the SHA-256 (FIPS 180-4) of the exact bytes of
// the previous record's line, without its "\n" (64 zeros for the first
// record of a chain). Editing, deleting, inserting or reordering a line
// breaks seq or prev; a checkpoint's signature (checkpoint.go) makes a
// rewrite of the whole chain up to it detectable too.

// Record kinds.
const (
	// KindStart is the first record of a new chain (seq 1, prev zero).
	KindStart = "start"
	// KindEvent is an audit event (issued, denied, revoked, admin call).
	KindEvent = "event"
	// KindCheckpoint is a signed checkpoint (see checkpoint.go).
	KindCheckpoint = "checkpoint"
	// KindRestart continues the chain of an earlier run: meshca was
	// restarted. It says whether that run ended with a shutdown
	// checkpoint and whether a torn last line was left behind.
	KindRestart = "restart"
	// KindRotated is the first record of a file that continues the chain
	// of the rotated file it names.
	KindRotated = "rotated"
)

// Checkpoint reasons. A rotate checkpoint normally ends its file (when
// the rotation then fails, events follow it in the same file); a
// shutdown checkpoint ends a run, and the next start appends its
// restart record after it.
const (
	CheckpointInterval = "interval"
	CheckpointRotate   = "rotate"
	CheckpointShutdown = "shutdown"
)

// zeroHash is prev of the first record of a chain.
var zeroHash [sha256.Size]byte

// maxLine bounds a record when the file is read back: the largest record
// meshca writes is a checkpoint carrying a post-quantum certificate chain,
// far below it.
const maxLine = 1 << 20

// record is one line as the verifier and the restart logic read it. Event
// records carry further members (time, level, msg and the event's fields),
// which only the hash covers.
type record struct {
	Seq  *uint64 `json:"seq"`
	Prev string  `json:"prev"`
	Kind string  `json:"kind"`
	Time string  `json:"time"`

	// checkpoint
	Reason    string `json:"reason,omitempty"`
	Algorithm string `json:"alg,omitempty"`
	Signature string `json:"sig,omitempty"`
	// AltAlgorithm and AltSignature: a Catalyst intermediate's ML-DSA
	// signature of the same message.
	AltAlgorithm string   `json:"alt_alg,omitempty"`
	AltSignature string   `json:"alt_sig,omitempty"`
	Chain        []string `json:"chain,omitempty"`

	// restart and rotated
	PreviousFile  string `json:"previous_file,omitempty"`
	PreviousClean *bool  `json:"previous_clean,omitempty"`
	TornBytes     int    `json:"torn_bytes,omitempty"`
	TornSHA256    string `json:"torn_sha256,omitempty"`
}

// parseRecord reads a line the way meshca wrote it. The head (seq, prev,
// kind) is read from the exact bytes and must be in the form appendHead
// writes: an event's own members follow it and may repeat a name (a
// revocation's "kind" in files of older versions), which a JSON decoder
// would resolve to the last one. Every other kind is meshca's own text
// and must be byte for byte what meshca writes for its values, so that no
// repeated, reordered or differently cased member, nor whitespace, can
// make the verifier read what other JSON tools do not.
func parseRecord(line []byte) (*record, error) {
	seq, prev, kind, err := parseHead(line)
	if err != nil {
		return nil, err
	}
	if kind == KindEvent {
		if !json.Valid(line) {
			return nil, errors.New("not a JSON object")
		}
		return &record{Seq: &seq, Prev: prev, Kind: kind}, nil
	}
	var r record
	if err := json.Unmarshal(line, &r); err != nil {
		return nil, fmt.Errorf("not a JSON record: %w", err)
	}
	r.Seq, r.Prev, r.Kind = &seq, prev, kind
	if !bytes.Equal(appendCanonical(nil, &r), line) {
		return nil, fmt.Errorf("a %s record not in the form meshca writes (a member repeated, reordered, added or re-encoded)", kind)
	}
	return &r, nil
}

// parseHead reads {"seq":N,"prev":"<hex>","kind":"<kind>", from the
// start of line and checks that appendHead writes exactly those bytes.
func parseHead(line []byte) (seq uint64, prev, kind string, err error) {
	rest, ok := bytes.CutPrefix(line, []byte(`{"seq":`))
	i := bytes.IndexByte(rest, ',')
	if !ok || i < 0 {
		return 0, "", "", errors.New(`no {"seq": head`)
	}
	if seq, err = strconv.ParseUint(string(rest[:i]), 10, 64); err != nil {
		return 0, "", "", fmt.Errorf("seq %q is not a number", rest[:i])
	}
	rest, ok = bytes.CutPrefix(rest[i:], []byte(`,"prev":"`))
	if !ok || len(rest) < 2*sha256.Size {
		return 0, "", "", errors.New("no prev member after seq")
	}
	var ph [sha256.Size]byte
	if _, err := hex.Decode(ph[:], rest[:2*sha256.Size]); err != nil {
		return 0, "", "", fmt.Errorf("prev %q is not a hex SHA-256", rest[:2*sha256.Size])
	}
	rest, ok = bytes.CutPrefix(rest[2*sha256.Size:], []byte(`","kind":"`))
	i = bytes.IndexByte(rest, '"')
	if !ok || i < 0 {
		return 0, "", "", errors.New("no kind member after prev")
	}
	kind = string(rest[:i])
	switch kind {
	case KindStart, KindEvent, KindCheckpoint, KindRestart, KindRotated:
	default:
		return 0, "", "", fmt.Errorf("unknown kind %q", kind)
	}
	if head := appendHead(nil, seq, &ph, kind); !bytes.HasPrefix(line, head) {
		return 0, "", "", fmt.Errorf("the head %.*q is not in the form meshca writes", len(head), line)
	}
	return seq, hex.EncodeToString(ph[:]), kind, nil
}

// appendCanonical appends the line meshca writes for a record of a kind
// other than event (what appendCheckpoint and the start, restart and
// rotated records of file.go and rotate.go write).
func appendCanonical(b []byte, r *record) []byte {
	var ph [sha256.Size]byte
	_, _ = hex.Decode(ph[:], []byte(r.Prev))
	b = appendHead(b, *r.Seq, &ph, r.Kind)
	b = append(b, `"time":`...)
	b = appendJSON(b, r.Time)
	switch r.Kind {
	case KindCheckpoint:
		b = appendString(b, "reason", r.Reason)
		b = appendString(b, "alg", r.Algorithm)
		b = appendString(b, "sig", r.Signature)
		if r.AltAlgorithm != "" || r.AltSignature != "" {
			b = appendString(b, "alt_alg", r.AltAlgorithm)
			b = appendString(b, "alt_sig", r.AltSignature)
		}
		b = append(b, `,"chain":[`...)
		for i, c := range r.Chain {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSON(b, c)
		}
		b = append(b, ']')
	case KindRestart:
		if r.PreviousFile != "" {
			b = appendString(b, "previous_file", r.PreviousFile)
		}
		b = append(b, `,"previous_clean":`...)
		b = strconv.AppendBool(b, r.PreviousClean != nil && *r.PreviousClean)
		if r.PreviousClean == nil {
			b = append(b, "?"...) // never what meshca writes
		}
		if r.TornBytes != 0 || r.TornSHA256 != "" {
			b = append(b, `,"torn_bytes":`...)
			b = strconv.AppendInt(b, int64(r.TornBytes), 10)
			b = appendString(b, "torn_sha256", r.TornSHA256)
		}
	case KindRotated:
		b = appendString(b, "previous_file", r.PreviousFile)
	}
	return append(b, '}')
}

// appendHead appends the members every record starts with, and the
// comma after them.
func appendHead(b []byte, seq uint64, prev *[sha256.Size]byte, kind string) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"prev":"`...)
	b = hex.AppendEncode(b, prev[:])
	b = append(b, `","kind":"`...)
	b = append(b, kind...)
	return append(b, `",`...)
}

// appendTime appends "time":"..." in RFC 3339 with nanoseconds, UTC.
func appendTime(b []byte, t time.Time) []byte {
	b = append(b, `"time":"`...)
	b = t.UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendString appends ,"key":<JSON string>.
func appendString(b []byte, key, v string) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return appendJSON(b, v)
}

// appendJSON appends v as a JSON string.
func appendJSON(b []byte, v string) []byte {
	q, _ := json.Marshal(v) // a string always marshals
	return append(b, q...)
}

package audit

import (
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

// Checkpoint reasons. A checkpoint with reason rotate or shutdown is
// final: nothing follows it in its file.
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

func parseRecord(line []byte) (*record, error) {
	var r record
	if err := json.Unmarshal(line, &r); err != nil {
		return nil, fmt.Errorf("not a JSON record: %w", err)
	}
	if r.Seq == nil {
		return nil, errors.New("no seq member")
	}
	if len(r.Prev) != 2*sha256.Size {
		return nil, fmt.Errorf("prev %q is not a hex SHA-256", r.Prev)
	}
	if _, err := hex.DecodeString(r.Prev); err != nil {
		return nil, fmt.Errorf("prev %q is not a hex SHA-256", r.Prev)
	}
	switch r.Kind {
	case KindStart, KindEvent, KindCheckpoint, KindRestart, KindRotated:
	default:
		return nil, fmt.Errorf("unknown kind %q", r.Kind)
	}
	return &r, nil
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

// appendString appends "key":<JSON string>.
func appendString(b []byte, key, v string) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	q, _ := json.Marshal(v) // a string always marshals
	return append(b, q...)
}

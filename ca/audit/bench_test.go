package audit

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
)

var benchDecision = Decision{Identity: "spiffe://cluster.local/ns/default/sa/app", Requester: "istio", Serial: "5f3a0c9d2e71b64a",
	Profile: "catalyst", Generation: 3, NotAfter: "2026-12-07T05:00:00Z"}

// BenchmarkIssued_ProcessLogOnly is the audit line of an issuance today.
func BenchmarkIssued_ProcessLogOnly(b *testing.B) {
	al := New(slog.New(slog.NewJSONHandler(io.Discard, nil)))
	b.ReportAllocs()
	for b.Loop() {
		al.Issued(context.Background(), benchDecision)
	}
}

// BenchmarkIssued_WithAuditFile adds the audit file: the hash-chained
// record appended to the buffer (written out every FlushInterval or 64
// KiB, never fsynced per record).
func BenchmarkIssued_WithAuditFile(b *testing.B) {
	f, err := OpenFile(FileOptions{Path: filepath.Join(b.TempDir(), "audit.log"), MaxSize: 1 << 30, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	al := New(slog.New(f.Tee(slog.NewJSONHandler(io.Discard, nil))))
	b.ReportAllocs()
	for b.Loop() {
		al.Issued(context.Background(), benchDecision)
	}
}

// BenchmarkCheckpoint is one checkpoint of a Catalyst intermediate (ECDSA
// P-256 and ML-DSA-65, each signature checked by certenc): audit writes
// wait for it once per checkpointInterval.
func BenchmarkCheckpoint(b *testing.B) {
	ca := newTestCA(b, "catalyst")
	key, _ := ca.source()()
	var line []byte
	var prev [32]byte
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if line, err = appendCheckpoint(line[:0], key, 2, &prev, testNow, CheckpointInterval); err != nil {
			b.Fatal(err)
		}
	}
}

package boltstore

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/meshca/meshca/ca/policy"
	"github.com/meshca/meshca/ca/store"
)

// benchRecord is an issuance record shaped like the ones signing writes:
// a serial from policy.RandomSerial, a 24 h leaf, a SPIFFE identity.
func benchRecord(b *testing.B, i int64, now time.Time) store.Issuance {
	serial, err := policy.RandomSerial()
	if err != nil {
		b.Fatal(err)
	}
	return store.Issuance{
		Serial:      hex.EncodeToString(serial.Bytes()),
		Identity:    fmt.Sprintf("spiffe://cluster.local/ns/bench/sa/workload-%d", i%512),
		NotBefore:   now.Add(-2 * time.Minute).Truncate(time.Second),
		NotAfter:    now.Add(24 * time.Hour).Truncate(time.Second),
		Fingerprint: fmt.Sprintf("%064x", i),
		Profile:     "classical",
		Requester:   "istio-grpc:spiffe://cluster.local/ns/bench/sa/workload",
		Generation:  1,
		IssuedAt:    now,
	}
}

// processCPU is the user plus system CPU time this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchPrefill is how many records the store holds before the timed part,
// so that commits work on a tree of realistic depth rather than an empty one.
const benchPrefill = 20000

// BenchmarkPutIssuanceConcurrent is PutIssuance as meshca serve drives it:
// ~64 concurrent signers (c=64) sharing group commits on a real, fsynced
// file. cpu-ns/op is the whole process's CPU (user+system, including the
// fsyncs' kernel time) per acknowledged record; commits/op shows how many
// records share an fsync; page-bytes/rec is the size of the issuance
// buckets' pages per stored record (how full bbolt keeps them).
func BenchmarkPutIssuanceConcurrent(b *testing.B) {
	path := filepath.Join(b.TempDir(), "meshca.db")
	s, err := Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	// Prefill through the same path, 500 records per group.
	var group []*pendingPut
	for i := range int64(benchPrefill) {
		rec := benchRecord(b, i, time.Now())
		k, err := serialKey(rec.Serial)
		if err != nil {
			b.Fatal(err)
		}
		v, err := json.Marshal(rec)
		if err != nil {
			b.Fatal(err)
		}
		group = append(group, &pendingPut{key: k, value: v, expiryKey: expiryKey(rec.NotAfter, k)})
		if len(group) == 500 {
			if err := s.writes.commit(group); err != nil {
				b.Fatal(err)
			}
			group = group[:0]
		}
	}
	var seq atomic.Int64
	txN0 := txCount(s.db)
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
	b.ReportAllocs()
	cpu0 := processCPU(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rec := benchRecord(b, benchPrefill+seq.Add(1), time.Now())
			if err := s.PutIssuance(ctx, rec); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	cpu := processCPU(b) - cpu0
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(txCount(s.db)-txN0)/float64(b.N), "commits/op")
	b.ReportMetric(float64(pageBytes(b, s.db))/float64(benchPrefill+b.N), "page-bytes/rec")
}

// pageBytes is the size of the pages the two issuance buckets occupy.
func pageBytes(b *testing.B, db *bolt.DB) int {
	n := 0
	if err := db.View(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketIssuances, bucketExpiry} {
			st := tx.Bucket(name).Stats()
			n += st.BranchAlloc + st.LeafAlloc
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	return n
}

// txCount is the number of read-write transactions committed so far.
func txCount(db *bolt.DB) int {
	var id int
	_ = db.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil })
	return id
}

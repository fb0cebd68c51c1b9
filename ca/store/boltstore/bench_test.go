package boltstore

import (
	"context"
	"encoding/hex"
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
func benchRecord(i int64, now time.Time) store.Issuance {
	serial, err := policy.RandomSerial()
	if err != nil {
		panic(err) // crypto/rand failed; b.Fatal cannot stop RunParallel's goroutines
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

// cpuTimes is the CPU time this process has used, in user space and in the
// kernel (system calls: pwrite, fdatasync).
type cpuTimes struct{ user, sys time.Duration }

func processCPU(b *testing.B) cpuTimes {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return cpuTimes{time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())}
}

// reportCPU reports the CPU used since c0 per n: total, user and system.
func reportCPU(b *testing.B, c0 cpuTimes, n int, unit string) {
	c := processCPU(b)
	user, sys := c.user-c0.user, c.sys-c0.sys
	b.ReportMetric(float64((user+sys).Nanoseconds())/float64(n), "cpu-ns/"+unit)
	b.ReportMetric(float64(sys.Nanoseconds())/float64(n), "sys-ns/"+unit)
}

// benchPrefill is how many records the store holds before the timed part,
// so that commits work on a tree of realistic depth rather than an empty one.
const benchPrefill = 20000

// BenchmarkPutIssuanceConcurrent is PutIssuance as meshca serve drives it:
// ~64 concurrent signers (c=64) sharing group commits on a real, fsynced
// file. cpu-ns/op is the whole process's CPU (user+system, including the
// fsyncs' kernel time) per acknowledged record; commits/op shows how many
// records share an fsync, writes/commit how many page writes (pwrite) each
// commit makes, page-bytes/rec the size of the issuance buckets' pages per
// stored record (how full bbolt keeps them).
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
		p, err := newPendingPut(benchRecord(i, time.Now()))
		if err != nil {
			b.Fatal(err)
		}
		group = append(group, p)
		if len(group) == 500 {
			if err := s.writes.commit(group); err != nil {
				b.Fatal(err)
			}
			group = group[:0]
		}
	}
	var seq atomic.Int64
	txN0, writes0 := txCount(s.db), pageWrites(s.db)
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
	b.ReportAllocs()
	cpu0 := processCPU(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rec := benchRecord(benchPrefill+seq.Add(1), time.Now())
			if err := s.PutIssuance(ctx, rec); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	reportCPU(b, cpu0, b.N, "op")
	commits := txCount(s.db) - txN0
	b.ReportMetric(float64(commits)/float64(b.N), "commits/op")
	b.ReportMetric(float64(pageWrites(s.db)-writes0)/float64(commits), "writes/commit")
	b.ReportMetric(float64(pageBytes(b, s.db))/float64(benchPrefill+b.N), "page-bytes/rec")
}

// pageBytes is the size of the pages the issuance buckets (the records
// and their two indexes) occupy.
func pageBytes(b *testing.B, db *bolt.DB) int {
	n := 0
	if err := db.View(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketIssuances, bucketExpiry, bucketByGeneration} {
			st := tx.Bucket(name).Stats()
			n += st.BranchAlloc + st.LeafAlloc
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	return n
}

// pageWrites is how many page writes bbolt has made.
func pageWrites(db *bolt.DB) int64 {
	st := db.Stats()
	return st.TxStats.GetWrite()
}

// txCount is the number of read-write transactions committed so far.
func txCount(db *bolt.DB) int {
	var id int
	_ = db.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil })
	return id
}

// BenchmarkCommitGroup is one group commit of 32 records (what c=64 yields,
// see commits/op above) per op, on one goroutine: the store's share of the
// CPU without the scheduling noise of 64 signers. cpu-ns/rec is the
// process CPU (including the fsyncs' kernel time, and building the records:
// serial, JSON, as PutIssuance does) per record; writes/commit
// counts bbolt's page writes (pwrite calls, the meta page included).
func BenchmarkCommitGroup(b *testing.B) {
	const group = 32
	s, err := Open(filepath.Join(b.TempDir(), "meshca.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var seq int64
	next := func() []*pendingPut {
		g := make([]*pendingPut, group)
		for i := range g {
			p, err := newPendingPut(benchRecord(seq, time.Now()))
			if err != nil {
				b.Fatal(err)
			}
			seq++
			g[i] = p
		}
		return g
	}
	for range benchPrefill / group {
		if err := s.writes.commit(next()); err != nil {
			b.Fatal(err)
		}
	}
	writes0 := pageWrites(s.db)
	b.ReportAllocs()
	cpu0 := processCPU(b)
	b.ResetTimer()
	for range b.N {
		// Built here, not ahead: serials minted in one millisecond sort
		// randomly, and real groups are minted just before they commit.
		if err := s.writes.commit(next()); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportCPU(b, cpu0, b.N*group, "rec")
	b.ReportMetric(float64(pageWrites(s.db)-writes0)/float64(b.N), "writes/commit")
}

// BenchmarkListIssuancesByIdentity lists the records of one of 512
// identities in a store of 200k and of 1M records (benchRecord: 24 h
// leaves): the key-only scan of the expiry index plus the matching
// records. full-scan is what finding them cost without the index: decode
// every record (ListIssuances). The store is filled unsynced, 1000 records
// per commit.
func BenchmarkListIssuancesByIdentity(b *testing.B) {
	for _, size := range []int{200_000, 1_000_000} {
		s, err := Open(filepath.Join(b.TempDir(), "meshca.db"))
		if err != nil {
			b.Fatal(err)
		}
		s.db.NoSync = true
		now := time.Now()
		group := make([]*pendingPut, 0, 1000)
		for i := range int64(size) {
			p, err := newPendingPut(benchRecord(i, now.Add(time.Duration(i)*time.Millisecond)))
			if err != nil {
				b.Fatal(err)
			}
			if group = append(group, p); len(group) == cap(group) {
				if err := s.writes.commit(group); err != nil {
					b.Fatal(err)
				}
				group = group[:0]
			}
		}
		s.db.NoSync = false
		identity := benchRecord(7, now).Identity
		want := (size - 7 + 511) / 512 // records i with i%512 == 7
		ctx := context.Background()
		b.Run(fmt.Sprintf("records=%d/index", size), func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				n := 0
				if err := s.ListIssuancesByIdentity(ctx, identity, func(store.Issuance) bool { n++; return true }); err != nil {
					b.Fatal(err)
				}
				if n != want {
					b.Fatalf("%d records of %s, want %d", n, identity, want)
				}
			}
		})
		b.Run(fmt.Sprintf("records=%d/full-scan", size), func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				n := 0
				if err := s.ListIssuances(ctx, func(r store.Issuance) bool {
					if r.Identity == identity {
						n++
					}
					return true
				}); err != nil {
					b.Fatal(err)
				}
				if n != want {
					b.Fatalf("%d records of %s, want %d", n, identity, want)
				}
			}
		})
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkListExpiries is what the workload inventory reads per refresh:
// the walk of the expiry index over 1M unexpired records, aggregating each
// identity's newest notAfter in a map (inventory.Workloads), no record
// decoded. The store is filled unsynced, 1000 records per commit.
func BenchmarkListExpiries(b *testing.B) {
	const size = 1_000_000
	s, err := Open(filepath.Join(b.TempDir(), "meshca.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	s.db.NoSync = true
	now := time.Now()
	group := make([]*pendingPut, 0, 1000)
	for i := range int64(size) {
		p, err := newPendingPut(benchRecord(i, now.Add(time.Hour+time.Duration(i)*time.Millisecond)))
		if err != nil {
			b.Fatal(err)
		}
		if group = append(group, p); len(group) == cap(group) {
			if err := s.writes.commit(group); err != nil {
				b.Fatal(err)
			}
			group = group[:0]
		}
	}
	s.db.NoSync = false
	ctx := context.Background()
	b.Run("records=1000000", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			latest := map[string]time.Time{}
			n := 0
			if err := s.ListExpiries(ctx, now, func(at time.Time, id string) bool {
				latest[id] = at
				n++
				return true
			}); err != nil {
				b.Fatal(err)
			}
			if n != size {
				b.Fatalf("%d entries, want %d", n, size)
			}
		}
	})
}

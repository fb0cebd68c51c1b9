package boltstore

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/ca/store"
)

// openDelayed opens a store with a commit delay on a fake clock and counts
// its group commits (syncs of the journal). Each commit is checkpointed at
// once, so that the only timer on the clock is the commit delay's.
func openDelayed(t *testing.T, delay time.Duration) (*Store, *clocktesting.FakeClock, *atomic.Int64) {
	t.Helper()
	n := checkpointRecords
	t.Cleanup(func() { checkpointRecords = n }) // after Close (cleanups run last first)
	checkpointRecords = 1
	clk := clocktesting.NewFakeClock(t0)
	s, err := Open(filepath.Join(t.TempDir(), "meshca.db"), WithCommitDelay(delay), WithClock(clk))
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	commits := &atomic.Int64{}
	// Set before any put: the committer reads it after receiving the first
	// record from the queue, which orders this write before that read.
	s.writes.j.sync = func(f *os.File) error {
		commits.Add(1)
		return fdatasync(f)
	}
	s.writes.j.writeDSync = func(f *os.File, b []byte, off int64) error {
		commits.Add(1)
		return pwriteDSync(f, b, off)
	}
	return s, clk, commits
}

// putAsync runs put in a goroutine and returns its result channel.
func putAsync(put func(context.Context, store.Issuance) error, rec store.Issuance) <-chan error {
	done := make(chan error, 1)
	go func() { done <- put(context.Background(), rec) }()
	return done
}

// waitForTimer polls until the committer waits on its commit-delay timer.
func waitForTimer(t *testing.T, clk *clocktesting.FakeClock) {
	t.Helper()
	require.Eventually(t, clk.HasWaiters, 5*time.Second, time.Millisecond, "the commit never waited for the reserved record")
}

func requireNotDone(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		t.Fatalf("the put returned (%v) before the reserved record arrived or the delay ended", err)
	default:
	}
}

func TestReserve_ACommitWaitsForRecordsBeingSignedAndSharesOneTransaction(t *testing.T) {
	s, clk, commits := openDelayed(t, time.Hour)
	first, second := s.Reserve(), s.Reserve()

	done1 := putAsync(first.PutIssuance, record(1, t0.Add(time.Hour)))
	waitForTimer(t, clk)
	requireNotDone(t, done1)

	done2 := putAsync(second.PutIssuance, record(2, t0.Add(time.Hour)))
	require.NoError(t, <-done1)
	require.NoError(t, <-done2)
	require.EqualValues(t, 1, commits.Load(), "both records in one commit")
	for _, i := range []int{1, 2} {
		_, err := s.GetIssuance(context.Background(), record(i, t0).Serial)
		require.NoError(t, err)
	}
}

func TestReserve_ACancelledReservationEndsTheWait(t *testing.T) {
	s, clk, commits := openDelayed(t, time.Hour)
	first, failed := s.Reserve(), s.Reserve()

	done := putAsync(first.PutIssuance, record(1, t0.Add(time.Hour)))
	waitForTimer(t, clk)
	failed.Cancel() // e.g. the CSR was refused: no record follows
	require.NoError(t, <-done)
	require.EqualValues(t, 1, commits.Load())
	failed.Cancel() // idempotent
}

func TestReserve_TheWaitIsBoundedByTheCommitDelay(t *testing.T) {
	s, clk, _ := openDelayed(t, 5*time.Millisecond)
	first, slow := s.Reserve(), s.Reserve()
	defer slow.Cancel()

	done := putAsync(first.PutIssuance, record(1, t0.Add(time.Hour)))
	waitForTimer(t, clk)
	clk.Step(4 * time.Millisecond)
	requireNotDone(t, done)
	clk.Step(time.Millisecond)
	require.NoError(t, <-done)
}

func TestReserve_NoWaitWithoutOtherReservationsOrWithZeroDelay(t *testing.T) {
	for name, delay := range map[string]time.Duration{"delay 1h, lone record": time.Hour, "delay 0": 0} {
		t.Run(name, func(t *testing.T) {
			s, _, commits := openDelayed(t, delay)
			only := s.Reserve()
			other := s.Reserve()
			defer other.Cancel()
			if delay == time.Hour {
				other.Cancel() // only one record is on its way
			}
			// No clock step: with nothing to wait for, the commit is immediate.
			require.NoError(t, only.PutIssuance(context.Background(), record(1, t0.Add(time.Hour))))
			require.NoError(t, s.PutIssuance(context.Background(), record(2, t0.Add(time.Hour))))
			// Both returned without a clock step: neither waited. (The
			// clock may still hold the idle journal's checkpoint timer.)
			require.EqualValues(t, 2, commits.Load())
		})
	}
}

func TestReserve_AReservationWritesOnce(t *testing.T) {
	s, _, _ := openDelayed(t, time.Hour)
	r := s.Reserve()
	require.NoError(t, r.PutIssuance(context.Background(), record(1, t0.Add(time.Hour))))
	require.ErrorContains(t, r.PutIssuance(context.Background(), record(2, t0.Add(time.Hour))), "already used")
	r.Cancel() // after a put: nothing
	require.EqualValues(t, 0, s.writes.reserved.Load())
}

func TestReserve_ABadRecordReleasesItsReservation(t *testing.T) {
	s, _, _ := openDelayed(t, time.Hour)
	r := s.Reserve()
	bad := record(1, t0)
	bad.Serial = "not hex"
	require.Error(t, r.PutIssuance(context.Background(), bad))
	require.EqualValues(t, 0, s.writes.reserved.Load(), "a record that never queues must not hold commits back")
}

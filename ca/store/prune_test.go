package store_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/ca/store"

	"github.com/meshca/meshca/test/logbuf"
)

var now = time.Date(2026, time.May, 1, 12, 0, 0, 0, time.UTC)

// fakeIssuances records every prune cutoff and answers with scripted results.
type fakeIssuances struct {
	store.Issuances // only PruneIssuances is called
	mu              sync.Mutex
	cutoffs         []time.Time
	results         []pruneResult
}

type pruneResult struct {
	n   int
	err error
}

func (f *fakeIssuances) PruneIssuances(_ context.Context, cutoff time.Time) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cutoffs = append(f.cutoffs, cutoff)
	if len(f.results) == 0 {
		return 0, nil
	}
	r := f.results[0]
	f.results = f.results[1:]
	return r.n, r.err
}

// within fails the test if ch yields nothing before a generous deadline; it
// never sleeps when ch is ready.
func within[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func TestPruneOnce_UsesNowMinusRetentionAndReportsTheCount(t *testing.T) {
	f := &fakeIssuances{results: []pruneResult{{n: 7}}}
	var reported []int
	p := &store.Pruner{
		Records: f, Retention: 7 * 24 * time.Hour,
		Clock:  testingclock.NewFakeClock(now),
		Pruned: func(n int) { reported = append(reported, n) },
	}
	n, err := p.PruneOnce(context.Background())
	require.NoError(t, err)
	require.Equal(t, 7, n)
	require.Equal(t, []time.Time{now.Add(-7 * 24 * time.Hour)}, f.cutoffs)
	require.Equal(t, []int{7}, reported)
}

func TestPruneOnce_ReturnsTheStoreError(t *testing.T) {
	boom := errors.New("disk on fire")
	f := &fakeIssuances{results: []pruneResult{{n: 3, err: boom}}}
	var reported []int
	p := &store.Pruner{Records: f, Clock: testingclock.NewFakeClock(now), Pruned: func(n int) { reported = append(reported, n) }}
	n, err := p.PruneOnce(context.Background())
	require.ErrorIs(t, err, boom)
	require.Equal(t, 3, n, "a partial prune still reports what it removed")
	require.Equal(t, []int{3}, reported)
}

func TestPruneOnce_DefaultsToTheWallClock(t *testing.T) {
	f := &fakeIssuances{}
	p := &store.Pruner{Records: f, Retention: time.Hour}
	before := time.Now()
	_, err := p.PruneOnce(context.Background())
	after := time.Now()
	require.NoError(t, err)
	require.False(t, f.cutoffs[0].Before(before.Add(-time.Hour)))
	require.False(t, f.cutoffs[0].After(after.Add(-time.Hour)))
}

func TestRun_PrunesAtOnceThenEveryIntervalUntilCanceled(t *testing.T) {
	f := &fakeIssuances{results: []pruneResult{{n: 2}, {n: 0}, {err: errors.New("disk on fire")}}}
	var logs logbuf.Buffer
	clk := testingclock.NewFakeClock(now)
	pruned := make(chan int, 10)
	p := &store.Pruner{
		Records:   f,
		Retention: 24 * time.Hour,
		Interval:  time.Hour,
		Log:       slog.New(slog.NewTextHandler(&logs, nil)),
		Clock:     clk,
		Pruned:    func(n int) { pruned <- n },
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		p.Run(ctx)
		close(done)
	}()

	require.Equal(t, 2, within(t, pruned, "the first pass"), "Run prunes immediately")
	for pass, want := range []int{0, 0} { // the third scripted result is an error with n=0
		waitForTimer(t, clk)
		clk.Step(time.Hour - time.Nanosecond)
		require.True(t, clk.HasWaiters(), "pass %d ran before the interval ended", pass+2)
		clk.Step(time.Nanosecond)
		require.Equal(t, want, within(t, pruned, "a later pass"), "pass %d", pass+2)
	}

	waitForTimer(t, clk)
	cancel()
	within(t, done, "Run to return after cancel")

	f.mu.Lock()
	defer f.mu.Unlock()
	require.Equal(t, []time.Time{
		now.Add(-24 * time.Hour),
		now.Add(time.Hour - 24*time.Hour),
		now.Add(2*time.Hour - 24*time.Hour),
	}, f.cutoffs)

	out := logs.String()
	require.Equal(t, 1, strings.Count(out, "pruned expired issuance records"), out)
	require.Contains(t, out, "count=2")
	require.Equal(t, 1, strings.Count(out, "pruning expired issuance records failed"), out)
	require.Contains(t, out, "disk on fire")
}

// waitForTimer polls, with a deadline, until Run waits on the fake clock.
func waitForTimer(t *testing.T, clk *testingclock.FakeClock) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !clk.HasWaiters() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for the pruner to wait for its next pass")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestRun_ReturnsWhenCanceledDuringAPassWithoutLoggingTheError(t *testing.T) {
	var logs logbuf.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	f := &fakeIssuances{}
	p := &store.Pruner{
		Records: &cancelingIssuances{fakeIssuances: f, cancel: cancel},
		Log:     slog.New(slog.NewTextHandler(&logs, nil)),
		// A clock that never moves: only the canceled context can stop Run.
		Clock: testingclock.NewFakeClock(now),
	}
	done := make(chan struct{})
	go func() {
		p.Run(ctx)
		close(done)
	}()
	within(t, done, "Run to return")
	require.Empty(t, logs.String(), "an error caused by shutdown is not logged")
}

// cancelingIssuances cancels the run's context during the prune and fails
// the way a store does when its context ends.
type cancelingIssuances struct {
	*fakeIssuances
	cancel context.CancelFunc
}

func (c *cancelingIssuances) PruneIssuances(ctx context.Context, cutoff time.Time) (int, error) {
	_, _ = c.fakeIssuances.PruneIssuances(ctx, cutoff)
	c.cancel()
	return 0, ctx.Err()
}

func TestGeneration_Active(t *testing.T) {
	require.False(t, store.Generation{}.Active())
	require.True(t, store.Generation{ActivatedAt: now}.Active())
	require.False(t, store.Generation{ActivatedAt: now, RetiredAt: now.Add(time.Hour)}.Active())
}

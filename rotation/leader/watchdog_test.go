package leader

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clocktesting "k8s.io/utils/clock/testing"
)

// The renewal watchdog runs on the injected clock: it stops the jobs once
// the Lease has gone unrenewed past the renew deadline. The clock starts
// far from the real time, so a watchdog on the real clock never fires.
func TestWatchRenewals_StopsTheJobsPastTheRenewDeadlineOnTheInjectedClock(t *testing.T) {
	fc := clocktesting.NewFakeClock(time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC))
	var logs bytes.Buffer
	e := &Elector{
		o: Options{RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second, Clock: fc,
			Log: slog.New(slog.NewTextHandler(&logs, nil))},
		renewed: &renewLock{clock: fc},
	}
	e.renewed.last.Store(fc.Now().UnixNano())
	jctx, stop := context.WithCancel(t.Context())
	defer stop()
	done := make(chan struct{})
	go func() { e.watchRenewals(t.Context(), stop); close(done) }()

	require.Eventually(t, fc.HasWaiters, 5*time.Second, time.Millisecond)
	fc.Step(10 * time.Second) // at the deadline: not past it
	fc.Step(500 * time.Millisecond)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the watchdog did not stop the jobs 10.5 s after the last renewal")
	}
	require.ErrorIs(t, jctx.Err(), context.Canceled)
	require.Contains(t, logs.String(), "since=10.5s", "the jobs were stopped before the renew deadline had passed")
}

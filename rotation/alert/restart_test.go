package alert

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	testclock "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/ca/store/boltstore"
)

func openStore(t *testing.T, path string) *boltstore.Store {
	t.Helper()
	s, err := boltstore.Open(path)
	require.NoError(t, err)
	return s
}

// A restart (the bbolt store closed and reopened) neither announces a
// firing alert again nor forgets it: the repeat keeps its schedule, and
// the alert that cleared while meshca was down is resolved after the
// restart.
func TestRestart_NoDuplicateFire_RepeatAndResolvedAfterRestart(t *testing.T) {
	clk := testclock.NewFakeClock(T0)
	r := newReceiver(t, slackOK)
	path := filepath.Join(t.TempDir(), "meshca.db")
	ctx := context.Background()

	st := openStore(t, path)
	h := startEngine(t, clk, st, Options{}, newSlack(t, r))
	require.NoError(t, h.e.Raise(ctx, expiring))
	require.JSONEq(t, slackFire, r.next(t))
	h.ack(t)
	h.stop()
	require.NoError(t, st.Close())

	clk.Step(30 * time.Minute)
	st = openStore(t, path)
	h = startEngine(t, clk, st, Options{}, newSlack(t, r))
	firing := h.e.Firing()
	require.Len(t, firing, 1, "the firing alert is remembered")
	require.True(t, firing[0].StartsAt.Equal(T0))
	require.NoError(t, h.e.Raise(ctx, expiring), "the rule raises it again after the restart")
	r.none(t)
	clk.Step(30 * time.Minute) // one repeat interval after the fire before the restart
	require.JSONEq(t, slackRepeat, r.next(t))
	h.ack(t)
	h.stop()
	require.NoError(t, st.Close())

	// The problem went away while meshca was down: the first check after
	// the restart clears it.
	st = openStore(t, path)
	h = startEngine(t, clk, st, Options{}, newSlack(t, r))
	require.NoError(t, h.e.Clear(ctx, expiring.Key()))
	require.JSONEq(t, slackResolved, r.next(t))
	h.ack(t)
	h.stop()
	list, err := st.ListAlertStates(ctx)
	require.NoError(t, err)
	require.Empty(t, list, "a delivered resolved alert is forgotten")
	require.NoError(t, st.Close())
	r.none(t)
}

// A notification that was not delivered when meshca stopped is delivered
// after the restart, once.
func TestRestart_UndeliveredFireIsDeliveredAfterRestart(t *testing.T) {
	clk := testclock.NewFakeClock(T0)
	down := newReceiver(t, answer{status: 503})
	path := filepath.Join(t.TempDir(), "meshca.db")
	ctx := context.Background()

	st := openStore(t, path)
	h := startEngine(t, clk, st, Options{}, newSlack(t, down))
	require.NoError(t, h.e.Raise(ctx, expiring))
	require.JSONEq(t, slackFire, down.next(t))
	h.sleep(t) // backing off
	h.stop()
	saved, err := st.GetAlertState(ctx, string(expiring.Key()))
	require.NoError(t, err)
	require.Equal(t, string(KindFire), saved.Pending)
	require.NoError(t, st.Close())

	up := newReceiver(t, slackOK)
	st = openStore(t, path)
	h = startEngine(t, clk, st, Options{}, newSlack(t, up))
	require.JSONEq(t, slackFire, up.next(t))
	h.ack(t)
	h.stop()
	saved, err = st.GetAlertState(ctx, string(expiring.Key()))
	require.NoError(t, err)
	require.Empty(t, saved.Pending)
	require.Equal(t, store.AlertFiring, saved.Status)
	require.NoError(t, st.Close())
	up.none(t)
	down.none(t)
}

// A replica that loses the Lease of the singleton jobs stops Run and runs
// it again when it leads again. That run starts from the stored states,
// which another replica may have changed meanwhile: here the other
// replica cleared the alert whose fire this one had not yet delivered,
// so the next run delivers the resolution and nothing else.
func TestRun_AgainAfterAnotherReplicaChangedTheStates(t *testing.T) {
	clk := testclock.NewFakeClock(T0)
	r := newReceiver(t, slackOK, answer{status: 503})
	ctx := context.Background()
	st := openStore(t, filepath.Join(t.TempDir(), "meshca.db"))
	t.Cleanup(func() { _ = st.Close() })

	h := startEngine(t, clk, st, Options{}, newSlack(t, r))
	require.NoError(t, h.e.Raise(ctx, expiring))
	require.JSONEq(t, slackFire, r.next(t))
	h.sleep(t) // the receiver refused it: backing off
	h.stop()   // the Lease is lost

	clk.Step(time.Hour)
	other, err := New(ctx, Options{States: st, Sinks: []Sink{newSlack(t, r)}, Clock: clk, RepeatInterval: time.Hour})
	require.NoError(t, err)
	require.NoError(t, other.Clear(ctx, expiring.Key()))

	h.rerun(t)
	require.JSONEq(t, slackResolved, r.next(t))
	h.ack(t)
	h.stop()
	list, err := st.ListAlertStates(ctx)
	require.NoError(t, err)
	require.Empty(t, list, "a delivered resolved alert is forgotten")
	r.none(t)
}

// A notification left pending when the sinks were removed from the
// configuration: New, without a sink, completes it at once (and must not
// deadlock doing so), and so does a run.
func TestNew_PendingNotificationWithoutASink(t *testing.T) {
	ctx := context.Background()
	st := openStore(t, filepath.Join(t.TempDir(), "meshca.db"))
	t.Cleanup(func() { _ = st.Close() })
	clk := testclock.NewFakeClock(T0)
	down := newReceiver(t, answer{status: 503})
	h := startEngine(t, clk, st, Options{}, newSlack(t, down))
	require.NoError(t, h.e.Raise(ctx, expiring))
	require.JSONEq(t, slackFire, down.next(t))
	h.sleep(t)
	h.stop()

	done := make(chan error, 1)
	go func() {
		e, err := New(ctx, Options{States: st, Clock: clk})
		if err == nil {
			rctx, cancel := context.WithCancel(ctx)
			cancel()
			err = e.Run(rctx)
		}
		done <- err
	}()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("New or Run without a sink did not return: deadlock")
	}
	saved, err := st.GetAlertState(ctx, string(expiring.Key()))
	require.NoError(t, err)
	require.Empty(t, saved.Pending)
	require.Equal(t, store.AlertFiring, saved.Status)
}

// A run's requeue and a Raise that stored its state just before it can
// both dispatch the same notification: it is queued once.
func TestDispatch_QueuesANotificationOnce(t *testing.T) {
	ctx := context.Background()
	st := openStore(t, filepath.Join(t.TempDir(), "meshca.db"))
	t.Cleanup(func() { _ = st.Close() })
	r := newReceiver(t, slackOK)
	e, err := New(ctx, Options{States: st, Sinks: []Sink{newSlack(t, r)}, Clock: testclock.NewFakeClock(T0), RepeatInterval: time.Hour})
	require.NoError(t, err)
	require.NoError(t, e.Raise(ctx, expiring)) // not running: stays queued
	saved, err := st.GetAlertState(ctx, string(expiring.Key()))
	require.NoError(t, err)
	e.dispatch([]Notification{{Kind: KindFire, State: saved, At: T0}})
	require.Len(t, e.workers[0].q, 1)
	e.requeue(ctx) // a run starting: drained and queued again, once
	require.Len(t, e.workers[0].q, 1)
}

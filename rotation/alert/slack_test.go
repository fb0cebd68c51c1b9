package alert

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	testclock "k8s.io/utils/clock/testing"
)

// expiring is the alert of the Slack tests.
var expiring = Alert{
	Rule:        "IntermediateExpiring",
	Object:      "intermediate generation 3",
	Severity:    Critical,
	Summary:     "the signing intermediate expires in 2 days & has no successor yet",
	Action:      "meshca is minting the successor and activates it at 66% of the lifetime",
	Expires:     T0.Add(48 * time.Hour),
	Fingerprint: "gen-3",
}

const slackFire = `{
  "text": "[FIRING:critical] intermediate generation 3: the signing intermediate expires in 2 days &amp; has no successor yet",
  "blocks": [
    {"type": "header", "text": {"type": "plain_text", "text": "Firing (critical): IntermediateExpiring"}},
    {"type": "section", "text": {"type": "mrkdwn", "text": "*What*\nthe signing intermediate expires in 2 days &amp; has no successor yet"}},
    {"type": "section", "fields": [
      {"type": "mrkdwn", "text": "*Where*\nintermediate generation 3"},
      {"type": "mrkdwn", "text": "*Severity*\ncritical"},
      {"type": "mrkdwn", "text": "*Expires*\n2026-05-03T12:00:00Z (in 2d 0h)"},
      {"type": "mrkdwn", "text": "*Firing since*\n2026-05-01T12:00:00Z"}
    ]},
    {"type": "section", "text": {"type": "mrkdwn", "text": "*What meshca is doing*\nmeshca is minting the successor and activates it at 66% of the lifetime"}},
    {"type": "context", "elements": [{"type": "mrkdwn", "text": "meshca alert ` + "`IntermediateExpiring/intermediate generation 3`" + `"}]}
  ]
}`

const slackRepeat = `{
  "text": "[FIRING:critical] intermediate generation 3: the signing intermediate expires in 2 days &amp; has no successor yet",
  "blocks": [
    {"type": "header", "text": {"type": "plain_text", "text": "Still firing (critical): IntermediateExpiring"}},
    {"type": "section", "text": {"type": "mrkdwn", "text": "*What*\nthe signing intermediate expires in 2 days &amp; has no successor yet"}},
    {"type": "section", "fields": [
      {"type": "mrkdwn", "text": "*Where*\nintermediate generation 3"},
      {"type": "mrkdwn", "text": "*Severity*\ncritical"},
      {"type": "mrkdwn", "text": "*Expires*\n2026-05-03T12:00:00Z (in 1d 23h)"},
      {"type": "mrkdwn", "text": "*Firing since*\n2026-05-01T12:00:00Z"}
    ]},
    {"type": "section", "text": {"type": "mrkdwn", "text": "*What meshca is doing*\nmeshca is minting the successor and activates it at 66% of the lifetime"}},
    {"type": "context", "elements": [{"type": "mrkdwn", "text": "meshca alert ` + "`IntermediateExpiring/intermediate generation 3`" + `"}]}
  ]
}`

const slackResolved = `{
  "text": "[RESOLVED] intermediate generation 3: the signing intermediate expires in 2 days &amp; has no successor yet",
  "blocks": [
    {"type": "header", "text": {"type": "plain_text", "text": "Resolved: IntermediateExpiring"}},
    {"type": "section", "text": {"type": "mrkdwn", "text": "*What*\nthe signing intermediate expires in 2 days &amp; has no successor yet"}},
    {"type": "section", "fields": [
      {"type": "mrkdwn", "text": "*Where*\nintermediate generation 3"},
      {"type": "mrkdwn", "text": "*Severity*\ncritical"},
      {"type": "mrkdwn", "text": "*Expires*\n2026-05-03T12:00:00Z (in 1d 23h)"},
      {"type": "mrkdwn", "text": "*Firing since*\n2026-05-01T12:00:00Z"},
      {"type": "mrkdwn", "text": "*Resolved at*\n2026-05-01T13:00:00Z"}
    ]},
    {"type": "section", "text": {"type": "mrkdwn", "text": "*What meshca is doing*\nNothing more: the problem is gone."}},
    {"type": "context", "elements": [{"type": "mrkdwn", "text": "meshca alert ` + "`IntermediateExpiring/intermediate generation 3`" + `"}]}
  ]
}`

func newSlack(t *testing.T, r *receiver) Sink {
	t.Helper()
	s, err := NewSlack(r.urlFile, nil)
	require.NoError(t, err)
	return s
}

// One message when the alert fires, none when it is raised again, a
// repeat after the repeat interval, a resolved message when it clears.
func TestSlack_FireRepeatResolved_ExactJSON(t *testing.T) {
	clk := testclock.NewFakeClock(T0)
	r := newReceiver(t, slackOK)
	reg := prometheus.NewRegistry()
	h := startEngine(t, clk, nil, Options{Registerer: reg}, newSlack(t, r))
	ctx := context.Background()

	require.NoError(t, h.e.Raise(ctx, expiring))
	require.JSONEq(t, slackFire, r.next(t))
	h.ack(t)
	require.Equal(t, 1.0, testutil.ToFloat64(h.e.metrics.firing.WithLabelValues("IntermediateExpiring", "critical")))

	require.NoError(t, h.e.Raise(ctx, expiring), "the same occurrence again")
	clk.Step(59 * time.Minute)
	require.NoError(t, h.e.Raise(ctx, expiring))
	r.none(t)

	clk.Step(time.Minute) // one repeat interval after the fire
	require.JSONEq(t, slackRepeat, r.next(t))
	h.ack(t)

	require.NoError(t, h.e.Clear(ctx, expiring.Key()))
	// Slack takes about one message a second per webhook.
	require.Equal(t, sleep{"slack", time.Second}, h.sleep(t))
	r.none(t)
	clk.Step(time.Second)
	require.JSONEq(t, slackResolved, r.next(t))
	h.ack(t)
	require.Equal(t, 0.0, testutil.ToFloat64(h.e.metrics.firing.WithLabelValues("IntermediateExpiring", "critical")))
	require.Equal(t, 3.0, testutil.ToFloat64(h.e.metrics.notifications.WithLabelValues("slack", resultSent)))

	require.NoError(t, h.e.Clear(ctx, expiring.Key()), "clearing what does not fire")
	clk.Step(2 * time.Hour)
	require.Empty(t, h.e.Firing())
	r.none(t)
}

// A 429 is retried after exactly its Retry-After, then succeeds.
func TestSlack_429_HonoursRetryAfter(t *testing.T) {
	clk := testclock.NewFakeClock(T0)
	r := newReceiver(t, slackOK, answer{status: 429, body: "rate_limited", retryAfter: "7"})
	h := startEngine(t, clk, nil, Options{}, newSlack(t, r))

	require.NoError(t, h.e.Raise(context.Background(), expiring))
	require.JSONEq(t, slackFire, r.next(t))
	require.Equal(t, sleep{"slack", 7 * time.Second}, h.sleep(t))
	clk.Step(7*time.Second - time.Millisecond)
	r.none(t)
	clk.Step(time.Millisecond)
	require.JSONEq(t, slackFire, r.next(t), "the same message again")
	h.ack(t)
	require.Equal(t, 1.0, testutil.ToFloat64(h.e.metrics.notifications.WithLabelValues("slack", resultRetried)))
	require.Equal(t, 1.0, testutil.ToFloat64(h.e.metrics.notifications.WithLabelValues("slack", resultSent)))
}

// A 5xx is retried with the exponential backoff (1s doubling, 10% jitter).
func TestSlack_5xx_BacksOff(t *testing.T) {
	clk := testclock.NewFakeClock(T0)
	r := newReceiver(t, slackOK, answer{status: 500, body: "internal_error"}, answer{status: 503})
	h := startEngine(t, clk, nil, Options{}, newSlack(t, r))

	require.NoError(t, h.e.Raise(context.Background(), expiring))
	require.JSONEq(t, slackFire, r.next(t))
	first := h.sleep(t)
	require.Equal(t, "slack", first.sink)
	require.GreaterOrEqual(t, first.d, time.Second)
	require.Less(t, first.d, 1100*time.Millisecond)
	clk.Step(first.d)
	require.JSONEq(t, slackFire, r.next(t))
	second := h.sleep(t)
	require.GreaterOrEqual(t, second.d, 2*time.Second)
	require.Less(t, second.d, 2200*time.Millisecond)
	clk.Step(second.d - time.Millisecond)
	r.none(t)
	clk.Step(time.Millisecond)
	require.JSONEq(t, slackFire, r.next(t))
	h.ack(t)
	require.Equal(t, 2.0, testutil.ToFloat64(h.e.metrics.notifications.WithLabelValues("slack", resultRetried)))
	require.Equal(t, 1.0, testutil.ToFloat64(h.e.metrics.notifications.WithLabelValues("slack", resultSent)))
}

// A 200 whose body is not "ok", and a 4xx other than 429, are not retried.
func TestSlack_RefusalIsNotRetried(t *testing.T) {
	for _, a := range []answer{{status: 404, body: "no_service"}, {status: 200, body: "invalid_payload"}} {
		clk := testclock.NewFakeClock(T0)
		r := newReceiver(t, slackOK, a)
		h := startEngine(t, clk, nil, Options{}, newSlack(t, r))
		require.NoError(t, h.e.Raise(context.Background(), expiring))
		require.JSONEq(t, slackFire, r.next(t))
		h.ack(t)
		require.Equal(t, 1.0, testutil.ToFloat64(h.e.metrics.notifications.WithLabelValues("slack", resultFailed)), "answer %d %s", a.status, a.body)
		r.none(t)
	}
}

// A notification Slack kept failing (maxAttempts attempts, about two
// minutes of an incident) is not lost until the alert's next repeat
// hours later: its state stays pending and it is delivered again
// redeliverAfter later, once.
func TestSlack_GivenUpIsDeliveredAgainLater(t *testing.T) {
	clk := testclock.NewFakeClock(T0)
	r := newReceiver(t, slackOK, failing(maxAttempts)...)
	h := startEngine(t, clk, nil, Options{RepeatInterval: 4 * time.Hour}, newSlack(t, r))
	require.NoError(t, h.e.Raise(context.Background(), expiring))
	h.untilGivenUp(t, r, clk)
	require.Equal(t, 1.0, testutil.ToFloat64(h.e.metrics.notifications.WithLabelValues("slack", resultFailed)))
	h.e.mu.Lock()
	pending := h.e.state[expiring.Key()].Pending
	h.e.mu.Unlock()
	require.Equal(t, string(KindFire), pending, "still to be delivered")

	clk.Step(redeliverAfter - time.Second)
	time.Sleep(50 * time.Millisecond)
	r.none(t)
	clk.Step(DefaultTick + time.Second)
	again := r.next(t)
	require.Contains(t, again, `"text":"[FIRING:critical] intermediate generation 3: the signing intermediate expires in 2 days \u0026amp; has no successor yet"`, "delivered again")
	require.Contains(t, again, "*Firing since*\\n2026-05-01T12:00:00Z")
	h.ack(t)
	require.Equal(t, 1.0, testutil.ToFloat64(h.e.metrics.notifications.WithLabelValues("slack", resultSent)))
	h.e.mu.Lock()
	pending = h.e.state[expiring.Key()].Pending
	h.e.mu.Unlock()
	require.Empty(t, pending)
	clk.Step(redeliverAfter + DefaultTick)
	time.Sleep(50 * time.Millisecond)
	r.none(t)
}

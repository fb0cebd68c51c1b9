package alert

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	testclock "k8s.io/utils/clock/testing"
)

const amFire = `{
  "version": "4",
  "groupKey": "{}:{alertname=\"IntermediateExpiring\", object=\"intermediate generation 3\"}",
  "truncatedAlerts": 0,
  "status": "firing",
  "receiver": "meshca",
  "groupLabels": {"alertname": "IntermediateExpiring", "object": "intermediate generation 3"},
  "commonLabels": {"alertname": "IntermediateExpiring", "object": "intermediate generation 3", "severity": "critical", "source": "meshca"},
  "commonAnnotations": {
    "summary": "the signing intermediate expires in 2 days & has no successor yet",
    "action": "meshca is minting the successor and activates it at 66% of the lifetime",
    "expires": "2026-05-03T12:00:00Z"
  },
  "externalURL": "",
  "alerts": [{
    "status": "firing",
    "labels": {"alertname": "IntermediateExpiring", "object": "intermediate generation 3", "severity": "critical", "source": "meshca"},
    "annotations": {
      "summary": "the signing intermediate expires in 2 days & has no successor yet",
      "action": "meshca is minting the successor and activates it at 66% of the lifetime",
      "expires": "2026-05-03T12:00:00Z"
    },
    "startsAt": "2026-05-01T12:00:00Z",
    "endsAt": "0001-01-01T00:00:00Z",
    "generatorURL": "",
    "fingerprint": "FINGERPRINT"
  }]
}`

const amResolved = `{
  "version": "4",
  "groupKey": "{}:{alertname=\"IntermediateExpiring\", object=\"intermediate generation 3\"}",
  "truncatedAlerts": 0,
  "status": "resolved",
  "receiver": "meshca",
  "groupLabels": {"alertname": "IntermediateExpiring", "object": "intermediate generation 3"},
  "commonLabels": {"alertname": "IntermediateExpiring", "object": "intermediate generation 3", "severity": "critical", "source": "meshca"},
  "commonAnnotations": {
    "summary": "the signing intermediate expires in 2 days & has no successor yet",
    "action": "meshca is minting the successor and activates it at 66% of the lifetime",
    "expires": "2026-05-03T12:00:00Z"
  },
  "externalURL": "",
  "alerts": [{
    "status": "resolved",
    "labels": {"alertname": "IntermediateExpiring", "object": "intermediate generation 3", "severity": "critical", "source": "meshca"},
    "annotations": {
      "summary": "the signing intermediate expires in 2 days & has no successor yet",
      "action": "meshca is minting the successor and activates it at 66% of the lifetime",
      "expires": "2026-05-03T12:00:00Z"
    },
    "startsAt": "2026-05-01T12:00:00Z",
    "endsAt": "2026-05-01T12:10:00Z",
    "generatorURL": "",
    "fingerprint": "FINGERPRINT"
  }]
}`

func withFingerprint(want, fp string) string { return strings.Replace(want, "FINGERPRINT", fp, 1) }

// fingerprintOf reads alerts[0].fingerprint: 16 hex digits, the same for
// every notification of one alert (as Alertmanager's).
func fingerprintOf(t *testing.T, body string) string {
	t.Helper()
	var p struct {
		Alerts []struct {
			Fingerprint string `json:"fingerprint"`
		} `json:"alerts"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &p))
	require.Len(t, p.Alerts, 1)
	require.Regexp(t, regexp.MustCompile(`^[0-9a-f]{16}$`), p.Alerts[0].Fingerprint)
	return p.Alerts[0].Fingerprint
}

func TestWebhook_AlertmanagerJSON(t *testing.T) {
	clk := testclock.NewFakeClock(T0)
	r := newReceiver(t, answer{status: 200}) // any 2xx; the body does not matter
	wh, err := NewWebhook(r.urlFile, nil)
	require.NoError(t, err)
	h := startEngine(t, clk, nil, Options{}, wh)
	ctx := context.Background()

	require.NoError(t, h.e.Raise(ctx, expiring))
	fire := r.next(t)
	fp := fingerprintOf(t, fire)
	require.JSONEq(t, withFingerprint(amFire, fp), fire)
	h.ack(t)

	clk.Step(10 * time.Minute)
	require.NoError(t, h.e.Clear(ctx, expiring.Key()))
	resolved := r.next(t)
	require.Equal(t, fp, fingerprintOf(t, resolved))
	require.JSONEq(t, withFingerprint(amResolved, fp), resolved)
	h.ack(t)

	other := expiring
	other.Object = "intermediate generation 4"
	require.NoError(t, h.e.Raise(ctx, other))
	require.NotEqual(t, fp, fingerprintOf(t, r.next(t)), "another alert, another fingerprint")
}

// Both sinks get every notification; a 202 is a success for the webhook.
func TestWebhook_AndSlackTogether(t *testing.T) {
	clk := testclock.NewFakeClock(T0)
	slack := newReceiver(t, slackOK)
	am := newReceiver(t, answer{status: 202})
	wh, err := NewWebhook(am.urlFile, nil)
	require.NoError(t, err)
	h := startEngine(t, clk, nil, Options{}, newSlack(t, slack), wh)
	require.NoError(t, h.e.Raise(context.Background(), expiring))
	require.JSONEq(t, slackFire, slack.next(t))
	fire := am.next(t)
	require.JSONEq(t, withFingerprint(amFire, fingerprintOf(t, fire)), fire)
	n := h.ack(t)
	require.Equal(t, KindFire, n.Kind)
	require.Equal(t, 1.0, counter(h, "webhook", resultSent))
	require.Equal(t, 1.0, counter(h, "slack", resultSent))
}

// A notification one sink gave up on is delivered again to that sink
// only: the healthy sink got it once and gets it no more, and the failing
// one is tried again redeliverAfter later, then twice as long after each
// further failure.
func TestRedelivery_OnlyToTheSinkThatGaveUp(t *testing.T) {
	clk := testclock.NewFakeClock(T0)
	slack := newReceiver(t, slackOK)
	am := newReceiver(t, answer{status: 202}, failing(2*maxAttempts)...)
	wh, err := NewWebhook(am.urlFile, nil)
	require.NoError(t, err)
	h := startEngine(t, clk, nil, Options{RepeatInterval: 4 * time.Hour}, newSlack(t, slack), wh)
	require.NoError(t, h.e.Raise(context.Background(), expiring))
	require.JSONEq(t, slackFire, slack.next(t))
	giveUp := func() { h.untilGivenUp(t, am, clk) }
	giveUp()
	require.Equal(t, 1.0, counter(h, "webhook", resultFailed))

	// Redelivered after redeliverAfter, to the webhook alone; it fails again.
	clk.Step(redeliverAfter + DefaultTick)
	giveUp()
	slack.none(t)
	require.Equal(t, 2.0, counter(h, "webhook", resultFailed))

	// The next try waits twice as long, and succeeds.
	clk.Step(redeliverAfter + DefaultTick)
	time.Sleep(50 * time.Millisecond)
	am.none(t)
	clk.Step(redeliverAfter)
	am.next(t)
	h.ack(t)
	slack.none(t)
	require.Equal(t, 1.0, counter(h, "webhook", resultSent))
	require.Equal(t, 1.0, counter(h, "slack", resultSent))
}

// A repeat due in the same tick as the redelivery of an earlier message
// supersedes it: every sink gets the repeat once, and the sink that gave
// up gets no stale copy of the earlier message beside it.
func TestRedelivery_ARepeatSupersedesIt(t *testing.T) {
	clk := testclock.NewFakeClock(T0)
	slack := newReceiver(t, slackOK)
	am := newReceiver(t, answer{status: 202}, failing(maxAttempts)...)
	wh, err := NewWebhook(am.urlFile, nil)
	require.NoError(t, err)
	h := startEngine(t, clk, nil, Options{RepeatInterval: 10 * time.Minute}, newSlack(t, slack), wh)
	require.NoError(t, h.e.Raise(context.Background(), expiring))
	slack.next(t)
	h.untilGivenUp(t, am, clk) // the webhook gave up on the fire

	// One step past both the redelivery and the repeat.
	clk.Step(10*time.Minute + DefaultTick)
	require.Contains(t, slack.next(t), "Still firing (critical)")
	require.Contains(t, am.next(t), `"status":"firing"`)
	n := h.ack(t)
	require.Equal(t, KindRepeat, n.Kind)
	time.Sleep(50 * time.Millisecond)
	slack.none(t)
	am.none(t)
	require.Equal(t, 1.0, counter(h, "webhook", resultSent), "the repeat only, no stale fire")
}

// failing is n answers 503.
func failing(n int) []answer {
	out := make([]answer, n)
	for i := range out {
		out[i] = answer{status: 503}
	}
	return out
}

// untilGivenUp takes r's maxAttempts failed deliveries of one message,
// stepping clk over each backoff, until the engine has its outcome.
func (h *harness) untilGivenUp(t *testing.T, r *receiver, clk *testclock.FakeClock) {
	t.Helper()
	for i := range maxAttempts {
		r.next(t)
		if i < maxAttempts-1 {
			clk.Step(h.sleep(t).d)
		}
	}
	h.ack(t)
}

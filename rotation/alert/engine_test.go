package alert

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	testclock "k8s.io/utils/clock/testing"
)

// kinds lists the kinds of the next n notifications delivered.
func (h *harness) kinds(t *testing.T, n int) []Kind {
	t.Helper()
	var out []Kind
	for range n {
		out = append(out, h.ack(t).Kind)
	}
	return out
}

// A new occurrence (another fingerprint) or a new severity fires again;
// the same one does not.
func TestEngine_NewOccurrenceFiresAgain(t *testing.T) {
	clk := testclock.NewFakeClock(T0)
	h := startEngine(t, clk, nil, Options{})
	ctx := context.Background()
	a := expiring
	a.Severity = Warning
	require.NoError(t, h.e.Raise(ctx, a))
	require.NoError(t, h.e.Raise(ctx, a))
	a.Summary, a.Expires = "changed wording", T0.Add(time.Hour)
	require.NoError(t, h.e.Raise(ctx, a), "what it says changes; it is the same occurrence")
	a.Severity = Critical
	require.NoError(t, h.e.Raise(ctx, a))
	a.Fingerprint = "gen-3-again"
	require.NoError(t, h.e.Raise(ctx, a))
	require.Equal(t, []Kind{KindFire, KindFire, KindFire}, h.kinds(t, 3))
	select {
	case n := <-h.acked:
		t.Fatalf("unexpected %s", n.Kind)
	default:
	}
	firing := h.e.Firing()
	require.Len(t, firing, 1)
	require.Equal(t, "critical", firing[0].Severity)
	require.Equal(t, "gen-3-again", firing[0].Fingerprint)
	require.Equal(t, uint64(3), firing[0].Seq)
}

// Announce runs once per occurrence, again after it failed.
func TestEngine_AnnounceUntilItSucceeds(t *testing.T) {
	clk := testclock.NewFakeClock(T0)
	h := startEngine(t, clk, nil, Options{})
	ctx := context.Background()
	calls, fail := 0, true
	a := expiring
	a.Announce = func() error {
		calls++
		if fail {
			return errors.New("apiserver down")
		}
		return nil
	}
	require.ErrorContains(t, h.e.Raise(ctx, a), "apiserver down")
	fail = false
	require.NoError(t, h.e.Raise(ctx, a))
	require.NoError(t, h.e.Raise(ctx, a))
	require.Equal(t, 2, calls)
	require.Equal(t, []Kind{KindFire}, h.kinds(t, 1), "the failed Announce does not fire twice")
	a.Fingerprint = "next"
	require.NoError(t, h.e.Raise(ctx, a))
	require.Equal(t, 3, calls)
}

func TestEngine_RefusesBadAlerts(t *testing.T) {
	e, err := New(context.Background(), Options{})
	require.NoError(t, err)
	for name, a := range map[string]Alert{
		"no rule":      {Object: "x", Severity: Warning},
		"no object":    {Rule: "R", Severity: Warning},
		"bad severity": {Rule: "R", Object: "x", Severity: "info"},
	} {
		require.Error(t, e.Raise(context.Background(), a), name)
	}
	require.Empty(t, e.Firing())
	_, err = New(context.Background(), Options{RepeatInterval: time.Second})
	require.ErrorContains(t, err, "repeat interval 1s is under 1m0s")
}

func TestTruncate_KeepsUTF8AndTheLimit(t *testing.T) {
	s := "ab€€€" // € is 3 bytes
	for n := 4; n <= len(s); n++ {
		got := truncate(s, n)
		require.LessOrEqual(t, len(got), n, "n=%d", n)
		require.True(t, utf8.ValidString(got), "n=%d: %q", n, got)
	}
	require.Equal(t, "ab…", truncate(s, 7))
	require.Equal(t, s, truncate(s, len(s)))
}

// meshca_alerts_firing counts the firing alerts by rule and severity.
func TestEngine_FiringGauge(t *testing.T) {
	reg := prometheus.NewRegistry()
	e, err := New(context.Background(), Options{Registerer: reg})
	require.NoError(t, err)
	ctx := context.Background()
	a, b, c := expiring, expiring, expiring
	b.Object = "intermediate generation 4"
	c.Rule, c.Severity = "CRLStale", Warning
	for _, x := range []Alert{a, b, c} {
		require.NoError(t, e.Raise(ctx, x))
	}
	want := `
# HELP meshca_alerts_firing Alerts meshca's alerting engine holds as firing, by rule and severity.
# TYPE meshca_alerts_firing gauge
meshca_alerts_firing{alert="CRLStale",severity="warning"} 1
meshca_alerts_firing{alert="IntermediateExpiring",severity="critical"} 2
`
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want), "meshca_alerts_firing"))
	require.NoError(t, e.Clear(ctx, c.Key()))
	require.NoError(t, e.Clear(ctx, a.Key()))
	want = `
# HELP meshca_alerts_firing Alerts meshca's alerting engine holds as firing, by rule and severity.
# TYPE meshca_alerts_firing gauge
meshca_alerts_firing{alert="IntermediateExpiring",severity="critical"} 1
`
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want), "meshca_alerts_firing"))
}

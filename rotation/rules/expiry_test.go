package rules

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	testclock "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/rotation/alert"
	"github.com/meshca/meshca/rotation/inventory"
)

// An intermediate of 100 days warns at 30 days left (30% of its lifetime
// comes before 7 days), turns critical at 3 days, stays critical once
// expired, and is cleared when it leaves the inventory. A cacerts Secret
// certificate of 10 days warns at 7 days left (before 30% = 3 days), and
// a source that fails clears nothing.
func TestCAExpiry_WarnCriticalExpiredCleared(t *testing.T) {
	clk := testclock.NewFakeClock(T0)
	inter := inventory.Certificate{Kind: inventory.KindIntermediate, Name: "gen-3",
		Cert: newCert(t, "meshca intermediate", 0x33, T0, T0.Add(100*day))}
	cacerts := inventory.Certificate{Kind: inventory.KindCACerts, Namespace: "istio-system", Name: "cacerts",
		Cert: newCert(t, "Istio CA", 0xab, T0, T0.Add(10*day))}
	src := &listSource{}
	src.set(nil, inter, cacerts, cacerts) // the same certificate twice in one Secret is one alert
	rule := &CAExpiry{Sources: []inventory.Source{src}, Thresholds: DefaultThresholds(),
		Action: func(c inventory.Certificate, _ time.Time) string {
			if c.Kind == inventory.KindIntermediate {
				return "meshca will rotate it at 2026-06-06T12:00:00Z."
			}
			return ""
		}}
	sw := startSweeper(t, clk, nil, rule)
	const interKey, caKey = "CACertificateExpiring/intermediate gen-3", "CACertificateExpiring/Secret istio-system/cacerts serial ab"
	require.Empty(t, sw.firing())

	sw.to(t, T0.Add(3*day-time.Hour))
	require.Empty(t, sw.firing(), "7 days and 1 hour left of 10")
	sw.to(t, T0.Add(3*day))
	require.Equal(t, map[string]string{caKey: "warning"}, sw.firing())
	st := firingState(t, sw.e, caKey)
	require.Equal(t, `the cacerts Secret's certificate "Istio CA" (serial ab) expires at 2026-05-11T12:00:00Z: 7d 0h left, 70% of its lifetime.`, st.Summary)
	require.Equal(t, "replace the cacerts files: put a new intermediate (ca-cert.pem, ca-key.pem, cert-chain.pem) into the Secret, then restart istiod.", st.Action)
	sw.to(t, T0.Add(7*day))
	require.Equal(t, map[string]string{caKey: "critical"}, sw.firing())

	// The failing source clears nothing; the Secret's certificate is replaced meanwhile.
	src.set(errors.New("informer not synced"))
	sw.to(t, T0.Add(8*day))
	require.Equal(t, map[string]string{caKey: "critical"}, sw.firing())
	src.set(nil, inter)
	sw.to(t, T0.Add(9*day))
	require.Empty(t, sw.firing(), "the replaced Secret certificate is cleared")

	sw.to(t, T0.Add(70*day-time.Hour))
	require.Empty(t, sw.firing())
	sw.to(t, T0.Add(70*day))
	require.Equal(t, map[string]string{interKey: "warning"}, sw.firing())
	st = firingState(t, sw.e, interKey)
	require.Equal(t, `meshca's intermediate "meshca intermediate" (serial 33) expires at 2026-08-09T12:00:00Z: 30d 0h left, 30% of its lifetime.`, st.Summary)
	require.Equal(t, "meshca will rotate it at 2026-06-06T12:00:00Z.", st.Action)
	require.True(t, st.Expires.Equal(T0.Add(100*day)))
	sw.to(t, T0.Add(97*day-time.Hour))
	require.Equal(t, map[string]string{interKey: "warning"}, sw.firing())
	sw.to(t, T0.Add(97*day))
	require.Equal(t, map[string]string{interKey: "critical"}, sw.firing())
	sw.to(t, T0.Add(101*day))
	require.Equal(t, map[string]string{interKey: "critical"}, sw.firing())
	require.Equal(t, `meshca's intermediate "meshca intermediate" (serial 33) expired at 2026-08-09T12:00:00Z.`, firingState(t, sw.e, interKey).Summary)

	src.set(nil) // rotated away
	sw.to(t, T0.Add(101*day+time.Hour))
	require.Empty(t, sw.firing())
}

// Skip leaves a retired intermediate out.
func TestCAExpiry_Skip(t *testing.T) {
	clk := testclock.NewFakeClock(T0.Add(99 * day))
	retired := inventory.Certificate{Kind: inventory.KindIntermediate, Name: "gen-2", Cert: newCert(t, "old", 2, T0, T0.Add(100*day))}
	src := &listSource{}
	src.set(nil, retired)
	var skip atomic.Bool
	skip.Store(true)
	rule := &CAExpiry{Sources: []inventory.Source{src}, Thresholds: DefaultThresholds(),
		Skip: func(c inventory.Certificate) bool { return skip.Load() && c.Name == "gen-2" }}
	sw := startSweeper(t, clk, nil, rule)
	require.Empty(t, sw.firing())
	skip.Store(false)
	sw.to(t, clk.Now().Add(time.Hour))
	require.Equal(t, map[string]string{"CACertificateExpiring/intermediate gen-2": "critical"}, sw.firing())
}

// A source that is down is evaluated from what it listed when it last
// answered, and the others' alerts clear as usual: meshca's rotated
// intermediate is cleared while the cluster's Secrets cannot be read, and
// the Secret's alert escalates. A source that answers in part (a
// certificate that does not parse) is taken at its word for the holders it
// lists. While a source has not answered since the Sweeper's Run started
// (meshca started, or this replica took the Lease again), nothing of the
// rule is cleared.
func TestCAExpiry_ASourceDownKeepsOnlyItsOwnAlerts(t *testing.T) {
	clk := testclock.NewFakeClock(T0)
	inter := inventory.Certificate{Kind: inventory.KindIntermediate, Name: "gen-3",
		Cert: newCert(t, "meshca intermediate", 0x33, T0, T0.Add(10*day))}
	next := inventory.Certificate{Kind: inventory.KindIntermediate, Name: "gen-4",
		Cert: newCert(t, "meshca intermediate", 0x34, T0.Add(3*day), T0.Add(100*day))}
	cacerts := inventory.Certificate{Kind: inventory.KindCACerts, Namespace: "istio-system", Name: "cacerts",
		Cert: newCert(t, "Istio CA", 0xab, T0, T0.Add(10*day))}
	renewed := inventory.Certificate{Kind: inventory.KindCACerts, Namespace: "istio-system", Name: "cacerts",
		Cert: newCert(t, "Istio CA", 0xac, T0.Add(3*day), T0.Add(100*day))}
	down := errors.New("informer not synced")
	mesh, cluster := &listSource{}, &listSource{}
	mesh.set(nil, inter)
	cluster.set(nil, cacerts)
	e, err := alert.New(context.Background(), alert.Options{Clock: clk, Log: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	newRule := func() *CAExpiry {
		return &CAExpiry{Sources: []inventory.Source{mesh, cluster}, Thresholds: DefaultThresholds()}
	}
	sw := startSweeper(t, clk, e, newRule())
	const interKey, caKey = "CACertificateExpiring/intermediate gen-3", "CACertificateExpiring/Secret istio-system/cacerts serial ab"
	sw.to(t, T0.Add(3*day))
	both := map[string]string{interKey: "warning", caKey: "warning"}
	require.Equal(t, both, sw.firing())

	// A restart while the cluster's source is down: nothing tells what it
	// holds, so the rotated intermediate's alert waits for it too.
	sw.stop()
	mesh.set(nil, next)
	cluster.set(down)
	sw = startSweeper(t, clk, e, newRule())
	sw.to(t, clk.Now().Add(time.Hour))
	require.Equal(t, both, sw.firing())

	// Once it has answered, only its own alert is kept while it is down,
	// and that one escalates from its last listing.
	cluster.set(nil, cacerts)
	sw.to(t, clk.Now().Add(time.Hour))
	require.Equal(t, map[string]string{caKey: "warning"}, sw.firing(), "the rotated intermediate is cleared")
	cluster.set(down)
	sw.to(t, T0.Add(7*day))
	require.Equal(t, map[string]string{caKey: "critical"}, sw.firing(), "the down source's last listing is evaluated")

	// An answer in part: the Secret it lists is taken as it is now.
	cluster.set(errors.New("Secret istio-system/other: ca-cert.pem does not parse"), renewed)
	sw.to(t, clk.Now().Add(time.Hour))
	require.Empty(t, sw.firing(), "the renewed Secret's alert is cleared")

	// Another replica held the Lease meanwhile: the last listing is not
	// trusted, and the rule clears nothing while the source is down.
	cluster.set(nil, cacerts)
	sw.to(t, clk.Now().Add(time.Hour))
	require.Equal(t, map[string]string{caKey: "critical"}, sw.firing())
	sw.stop()
	cluster.set(down)
	mesh.set(nil, inter)
	sw = startSweeper(t, clk, e, sw.s.Rules[0])
	require.Equal(t, map[string]string{caKey: "critical", interKey: "critical"}, sw.firing())
	mesh.set(nil, next)
	sw.to(t, clk.Now().Add(time.Hour))
	require.Equal(t, map[string]string{caKey: "critical", interKey: "critical"}, sw.firing(), "nothing cleared")
}

// A source whose first answer of the term comes with an error (meshca's
// roots from memory, its generations from a store that does not answer)
// is not taken as a listing: until it answers in full, nothing of the
// rule is cleared, the generations' alerts included.
func TestCAExpiry_AnAnswerWithAnErrorFirstIsNotAListing(t *testing.T) {
	clk := testclock.NewFakeClock(T0.Add(3 * day))
	rootCert := inventory.Certificate{Kind: inventory.KindRoot, Name: "root", Cert: newCert(t, "root", 0x01, T0, T0.Add(1000*day))}
	inter := inventory.Certificate{Kind: inventory.KindIntermediate, Name: "gen-3", Cert: newCert(t, "meshca intermediate", 0x33, T0, T0.Add(10*day))}
	ca := &listSource{}
	ca.set(nil, rootCert, inter)
	e, err := alert.New(context.Background(), alert.Options{Clock: clk, Log: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	sw := startSweeper(t, clk, e, &CAExpiry{Sources: []inventory.Source{ca}, Thresholds: DefaultThresholds()})
	const interKey = "CACertificateExpiring/intermediate gen-3"
	require.Equal(t, map[string]string{interKey: "warning"}, sw.firing())
	sw.stop()

	ca.set(errors.New("list generations: store unavailable"), rootCert) // a restart, the store down
	sw = startSweeper(t, clk, e, &CAExpiry{Sources: []inventory.Source{ca}, Thresholds: DefaultThresholds()})
	sw.to(t, clk.Now().Add(2*time.Hour))
	require.Equal(t, map[string]string{interKey: "warning"}, sw.firing(), "not cleared while the generations cannot be read")
	ca.set(nil, rootCert)
	sw.to(t, clk.Now().Add(time.Hour))
	require.Empty(t, sw.firing(), "cleared once the source answers in full")
}

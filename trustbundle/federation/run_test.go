package federation

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/rotation/alert"
)

// run starts the poller's loop; the test's end stops it.
func (f *fixture) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.p.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// waitTimer waits until the loop waits on the fake clock.
func (f *fixture) waitTimer(t *testing.T) {
	t.Helper()
	require.Eventually(t, f.clock.HasWaiters, 10*time.Second, time.Millisecond)
}

func waitRequests(t *testing.T, ep *foreign, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return ep.requests() >= n }, 10*time.Second, time.Millisecond, "want %d requests", n)
}

func TestRun_WaitsTheClampedRefreshHintThenBacksOff(t *testing.T) {
	a := newCA(t, "partner root A", "")
	ep := newForeign(t, partner, nil)
	ep.serve(1, 45*time.Second, a.cert)
	f := newFixture(t, Options{}, web(ep, ep.webCAFile(t)))
	f.run(t)
	waitRequests(t, ep, 1)
	f.waitTimer(t)

	f.clock.Step(44 * time.Second)
	require.True(t, f.clock.HasWaiters(), "the refresh hint (45s) has not passed")
	require.Equal(t, 1, ep.requests())
	f.clock.Step(time.Second)
	waitRequests(t, ep, 2)
	f.waitTimer(t)

	// The endpoint fails: the retry waits minRefresh (30s, jittered up to
	// 10%), not the hint.
	ep.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		ep.mu.Lock()
		ep.hits++
		ep.mu.Unlock()
		http.Error(w, "down", http.StatusServiceUnavailable)
	})
	f.clock.Step(45 * time.Second)
	waitRequests(t, ep, 3)
	require.Eventually(t, func() bool { return f.fetches(t, OutcomeError) == 1 }, 10*time.Second, time.Millisecond)
	f.waitTimer(t)
	f.clock.Step(29 * time.Second)
	require.True(t, f.clock.HasWaiters())
	require.Equal(t, 3, ep.requests())
	f.clock.Step(4 * time.Second)
	waitRequests(t, ep, 4)
}

func TestRun_StaleBundleRaisesTheAlertAndTheAgeMetric(t *testing.T) {
	a := newCA(t, "partner root A", "")
	ep := newForeign(t, partner, nil)
	ep.serve(1, 0, a.cert)
	engine, err := alert.New(context.Background(), alert.Options{})
	require.NoError(t, err)
	f := newFixture(t, Options{Alerts: engine}, web(ep, ep.webCAFile(t)))
	f.run(t)
	waitRequests(t, ep, 1)
	f.waitTimer(t)
	age := func() float64 {
		return gauge(t, f.reg, "meshca_federation_bundle_age_seconds", map[string]string{"trust_domain": partner})
	}
	require.Equal(t, 0.0, age())
	require.Equal(t, config.DefaultFederationStaleAfter.Seconds(), gauge(t, f.reg, "meshca_federation_stale_after_seconds", nil))

	ep.srv.Close() // the foreign endpoint goes away
	f.clock.Step(config.DefaultFederationRefresh)
	require.Eventually(t, func() bool { return f.fetches(t, OutcomeError) == 1 }, 10*time.Second, time.Millisecond)
	require.Empty(t, engine.Firing(), "5m old is not stale")
	// Retries back off to maxRefresh; step until past staleAfter.
	for f.clock.Since(f.p.started) <= config.DefaultFederationStaleAfter+config.DefaultFederationMaxRefresh {
		f.waitTimer(t)
		f.clock.Step(config.DefaultFederationMaxRefresh)
	}
	require.Eventually(t, func() bool { return len(engine.Firing()) == 1 }, 10*time.Second, time.Millisecond)
	firing := engine.Firing()[0]
	require.Equal(t, RuleStale, firing.Rule)
	require.Equal(t, "trust domain "+partner, firing.Object)
	require.Greater(t, age(), config.DefaultFederationStaleAfter.Seconds())
	_, roots := f.sink.published()
	require.True(t, roots[partner][0].Equal(a.cert), "the stale bundle stays published")
}

package publish

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/test/logbuf"
)

// The apiserver goes away, the desired state changes meanwhile, the
// apiserver comes back: the publisher neither crashes nor exits, and
// reconciles once it can.
func TestPublisher_ApiserverOutage_ReconcilesAfterRestart(t *testing.T) {
	ctx := testContext(t)
	deleteCACertsSecret(t)
	a, b := newTestCA(t, "A"), newTestCA(t, "B")
	p := startPublisher(t, config.TrustBundleConfig{})
	require.NoError(t, p.Update(ctx, a.desired(nil)))
	waitFor(t, restoreTime, "cacerts before the outage", wantSecret(t, expectedSecret(t, a, nil, root.EncodePEM(a.root))))

	require.NoError(t, env.StopAPIServer())
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			require.NoError(t, env.RestartAPIServer())
		}
	})
	require.NoError(t, p.Update(ctx, a.desired(nil, a.root, b.root)), "Update needs no apiserver")
	select {
	case err := <-p.done:
		t.Fatalf("Run returned during the outage: %v", err)
	default:
	}
	require.NoError(t, env.RestartAPIServer())
	restarted = true

	both := root.EncodePEM(a.root, b.root)
	took := waitFor(t, 30*time.Second, "cacerts after the outage", wantSecret(t, expectedSecret(t, a, nil, both)))
	waitFor(t, 30*time.Second, "root ConfigMap after the outage", wantConfigMap(t, "default", RootConfigMapName, rootConfigMapKey, string(both)))
	waitFor(t, 30*time.Second, "bundle query after the outage", wantQueryRoots(t, workload, a.root, b.root))
	t.Logf("reconciled %s after the apiserver came back", took)
	select {
	case err := <-p.done:
		t.Fatalf("Run returned: %v", err)
	default:
	}
}

// A replica that loses the Lease stops the publisher (its manager stops)
// and, leading again, starts it on a new manager: the second run
// reconciles what changed meanwhile.
func TestPublisher_RunsAgainOnANewManager(t *testing.T) {
	ctx := testContext(t)
	deleteCACertsSecret(t)
	a, b := newTestCA(t, "A"), newTestCA(t, "B")
	p := startPublisher(t, config.TrustBundleConfig{})
	require.NoError(t, p.Update(ctx, a.desired(nil)))
	waitFor(t, restoreTime, "cacerts in the first run", wantSecret(t, expectedSecret(t, a, nil, root.EncodePEM(a.root))))
	p.stop()

	require.NoError(t, p.Update(ctx, a.desired(nil, a.root, b.root)), "Update while not running")
	mgr := newManager(t, rbacConfig, p.Publisher, slog.New(slog.NewTextHandler(logbuf.ForTest(t), nil)))
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(runCtx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(15 * time.Second):
			t.Error("the second manager did not stop within 15s of cancellation")
		}
	})
	both := root.EncodePEM(a.root, b.root)
	waitFor(t, 30*time.Second, "cacerts in the second run", wantSecret(t, expectedSecret(t, a, nil, both)))
	waitFor(t, 30*time.Second, "root ConfigMap in the second run", wantConfigMap(t, "default", RootConfigMapName, rootConfigMapKey, string(both)))
	select {
	case err := <-done:
		t.Fatalf("the second manager stopped: %v", err)
	default:
	}
}

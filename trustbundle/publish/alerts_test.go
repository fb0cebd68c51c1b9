package publish

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/ca/store/boltstore"
	"github.com/meshca/meshca/rotation/alert"
)

// recordingSink keeps every notification it is given.
type recordingSink struct {
	mu  sync.Mutex
	got []alert.Notification
}

func (s *recordingSink) Name() string               { return "recorder" }
func (s *recordingSink) MinInterval() time.Duration { return 0 }
func (s *recordingSink) Send(_ context.Context, n alert.Notification) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, n)
	return nil
}

func (s *recordingSink) notifications() []alert.Notification {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]alert.Notification(nil), s.got...)
}

// The Publisher's problems go through the alerting engine: a CRL over the
// ConfigMap limit fires one critical alert, however often the Publisher
// reconciles, and a CRL that fits resolves it; the state is in the store.
func TestPublisher_ProblemsAreAlerts(t *testing.T) {
	ctx := testContext(t)
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "meshca.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	sink := &recordingSink{}
	engine, err := alert.New(ctx, alert.Options{States: st, Sinks: []alert.Sink{sink}})
	require.NoError(t, err)
	ectx, cancel := context.WithCancel(context.Background())
	engineDone := make(chan error, 1)
	go func() { engineDone <- engine.Run(ectx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-engineDone) })

	ca := newTestCA(t, "A")
	small, huge := ca.crl(t, 2), ca.crl(t, 40_000)
	p := startPublisher(t, config.TrustBundleConfig{}, WithAlerts(engine), WithResync(time.Second))
	require.NoError(t, p.Update(ctx, Desired{Roots: ca.bundle.Roots, CRLs: huge}))
	key := string(alert.KeyOf(ReasonCRLTooLarge, "ConfigMap */"+config.DefaultCRLConfigMapName))
	waitFor(t, restoreTime, "the alert fires", func() error {
		if len(sink.notifications()) == 0 {
			return errors.New("no notification")
		}
		return nil
	})
	// Reconciles go on (resync every second); the alert fires once.
	require.NoError(t, p.Update(ctx, Desired{Roots: ca.bundle.Roots, CRLs: huge}))
	time.Sleep(2 * time.Second) // two resyncs of the real informers
	got := sink.notifications()
	require.Len(t, got, 1, "one notification per occurrence")
	n := got[0]
	require.Equal(t, alert.KindFire, n.Kind)
	require.Equal(t, key, n.State.Key)
	require.Equal(t, ReasonCRLTooLarge, n.State.Rule)
	require.Equal(t, "critical", n.State.Severity)
	require.Contains(t, n.State.Summary, fmt.Sprintf("the CRL is %d bytes", len(huge)))
	require.Equal(t, "meshca keeps the previous CRL in the ConfigMaps and retries whenever the CRL changes.", n.State.Action)
	saved, err := st.GetAlertState(ctx, key)
	require.NoError(t, err)
	require.Equal(t, store.AlertFiring, saved.Status)
	refused := map[string]string{"object": objectCRLCM, "reason": reasonTooLarge}
	require.Equal(t, 1.0, metricValue(t, p.reg, "meshca_trustbundle_refused", refused))

	require.NoError(t, p.Update(ctx, Desired{Roots: ca.bundle.Roots, CRLs: small}))
	waitFor(t, restoreTime, "the alert resolves", func() error {
		got := sink.notifications()
		if len(got) < 2 {
			return errors.New("no resolved notification")
		}
		if got[1].Kind != alert.KindResolved || got[1].State.Key != key {
			return fmt.Errorf("second notification is %s of %s", got[1].Kind, got[1].State.Key)
		}
		return nil
	})
	// The gauge follows the firing alerts right after the engine has
	// notified the sinks.
	waitFor(t, restoreTime, "the gauge drops", func() error {
		if v := metricValue(t, p.reg, "meshca_trustbundle_refused", refused); v != 0 {
			return fmt.Errorf("meshca_trustbundle_refused is %v", v)
		}
		return nil
	})
	require.Empty(t, engine.Firing())
}

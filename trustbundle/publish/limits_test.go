package publish

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshca/meshca/ca/config"
)

func TestPublisher_RefusesCRLOver1MiB_WithEventAndMetric(t *testing.T) {
	ctx := testContext(t)
	ca := newTestCA(t, "L")
	small, huge := ca.crl(t, 2), ca.crl(t, 40_000)
	require.Greater(t, len(huge), MaxObjectBytes)
	p := startPublisher(t, config.TrustBundleConfig{})
	require.NoError(t, p.Update(ctx, Desired{Roots: ca.bundle.Roots, CRLs: small}))
	crlCM := wantConfigMap(t, "default", config.DefaultCRLConfigMapName, crlConfigMapKey, string(small))
	waitFor(t, restoreTime, "small CRL published", crlCM)

	require.NoError(t, p.Update(ctx, Desired{Roots: ca.bundle.Roots, CRLs: huge}))
	refused := map[string]string{"object": objectCRLCM, "reason": reasonTooLarge}
	// An earlier test may have left an Event with the same message: the
	// gauge, set before this Publisher writes its Event, says it is ours.
	waitFor(t, restoreTime, "CRLTooLarge Event", func() error {
		if v := metricValue(t, p.reg, "meshca_trustbundle_refused", refused); v != 1 {
			return fmt.Errorf("meshca_trustbundle_refused is %v", v)
		}
		for _, ev := range eventsFor(t, istiod, config.DefaultCRLConfigMapName, ReasonCRLTooLarge) {
			if strings.Contains(ev.Message, fmt.Sprintf("%d bytes", len(huge))) {
				return nil
			}
		}
		return fmt.Errorf("no %s Event naming %d bytes", ReasonCRLTooLarge, len(huge))
	})
	require.Equal(t, 1.0, metricValue(t, p.reg, "meshca_trustbundle_refused", refused))
	require.NoError(t, crlCM(), "the ConfigMap keeps the previous CRL")
	list, err := env.Client.CoreV1().ConfigMaps("").List(ctx, metav1.ListOptions{LabelSelector: managedBySelector})
	require.NoError(t, err)
	for _, cm := range list.Items {
		require.LessOrEqual(t, len(cm.Data[crlConfigMapKey]), MaxObjectBytes, "ConfigMap %s/%s", cm.Namespace, cm.Name)
	}

	next := ca.crl(t, 3)
	require.NoError(t, p.Update(ctx, Desired{Roots: ca.bundle.Roots, CRLs: next}))
	waitFor(t, restoreTime, "a CRL that fits is published", wantConfigMap(t, "default", config.DefaultCRLConfigMapName, crlConfigMapKey, string(next)))
	// A namespace queued by its own event may take the new CRL before the
	// sync that clears the gauge.
	waitFor(t, restoreTime, "the refusal is cleared", func() error {
		if v := metricValue(t, p.reg, "meshca_trustbundle_refused", refused); v != 0 {
			return fmt.Errorf("meshca_trustbundle_refused is %v", v)
		}
		return nil
	})
}

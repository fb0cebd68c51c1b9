package publish

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/trustbundle/cacerts"
)

// createForeignSecret puts a cacerts Secret meshca did not write, as an
// operator's `kubectl create secret` would.
func createForeignSecret(t *testing.T, data map[string][]byte) *corev1.Secret {
	t.Helper()
	deleteCACertsSecret(t)
	s, err := env.Client.CoreV1().Secrets(istiod).Create(testContext(t), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: SecretName, Namespace: istiod},
		Data:       data,
	}, metav1.CreateOptions{FieldManager: "kubectl-create"})
	require.NoError(t, err)
	return s
}

func TestPublisher_ForeignCACertsSecret_IsNotOverwrittenAndIsReported(t *testing.T) {
	cases := map[string]func(t *testing.T) map[string][]byte{
		"another CA": func(t *testing.T) map[string][]byte {
			other := newTestCA(t, "operator")
			files, err := cacerts.Files(other.bundle, other.key, nil)
			require.NoError(t, err)
			return files
		},
		"malformed": func(*testing.T) map[string][]byte {
			return map[string][]byte{cacerts.KeyCACert: []byte("not PEM")}
		},
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			ctx := testContext(t)
			foreign := createForeignSecret(t, data(t))
			ca, next := newTestCA(t, "F"), newTestCA(t, "F2")
			p := startPublisher(t, config.TrustBundleConfig{}, WithWorkers(1))
			require.NoError(t, p.Update(ctx, ca.desired(nil)))

			waitFor(t, restoreTime, "ForeignCACertsSecret Event", func() error {
				for _, ev := range eventsFor(t, istiod, SecretName, ReasonForeignCACertsSecret) {
					if ev.InvolvedObject.UID == foreign.UID && ev.Type == corev1.EventTypeWarning {
						t.Logf("Event: %s", ev.Message)
						return nil
					}
				}
				return fmt.Errorf("no %s Event on Secret %s/%s", ReasonForeignCACertsSecret, istiod, SecretName)
			})
			require.Equal(t, 1.0, metricValue(t, p.reg, "meshca_trustbundle_conflicts", map[string]string{"object": objectCACerts}))
			require.Equal(t, 0.0, metricValue(t, p.reg, "meshca_trustbundle_writes_total", map[string]string{"object": objectCACerts}), "nothing written")
			// The rest of trust distribution goes on.
			waitFor(t, restoreTime, "root ConfigMap", wantConfigMap(t, "default", RootConfigMapName, rootConfigMapKey, string(root.EncodePEM(ca.root))))

			// Reconciling again reports nothing new: Update queues the Secret
			// before the bundles, and one worker takes them in order, so once
			// the bundles show the new root the Secret was seen again.
			require.NoError(t, p.Update(ctx, ca.desired(nil, ca.root, next.root)))
			waitFor(t, restoreTime, "bundles after the second Update", wantQueryRoots(t, workload, ca.root, next.root))
			var events int
			for _, ev := range eventsFor(t, istiod, SecretName, ReasonForeignCACertsSecret) {
				if ev.InvolvedObject.UID == foreign.UID {
					events++
				}
			}
			require.Equal(t, 1, events, "one Event per foreign Secret version")
			require.Equal(t, 1.0, metricValue(t, p.reg, "meshca_trustbundle_conflicts", map[string]string{"object": objectCACerts}))

			got, err := getSecret(t)
			require.NoError(t, err)
			require.Equal(t, foreign.ResourceVersion, got.ResourceVersion, "the foreign Secret is untouched")
			require.Equal(t, foreign.Data, got.Data)
		})
	}
}

func TestPublisher_ForeignCACertsSecret_ReplacedWithTakeOwnership(t *testing.T) {
	ctx := testContext(t)
	foreign := createForeignSecret(t, map[string][]byte{cacerts.KeyCACert: []byte("not PEM")})
	ca := newTestCA(t, "T")
	p := startPublisher(t, config.TrustBundleConfig{TakeOwnership: true})
	require.NoError(t, p.Update(ctx, ca.desired(nil)))
	waitFor(t, restoreTime, "cacerts replaced", wantSecret(t, expectedSecret(t, ca, nil, root.EncodePEM(ca.root))))
	waitFor(t, restoreTime, "takeover Event", func() error {
		if len(eventsFor(t, istiod, SecretName, ReasonCACertsSecretTakenOver)) == 0 {
			return fmt.Errorf("no %s Event", ReasonCACertsSecretTakenOver)
		}
		return nil
	})
	got, err := getSecret(t)
	require.NoError(t, err)
	require.Equal(t, foreign.UID, got.UID, "replaced in place, not deleted")
	require.Equal(t, 0.0, metricValue(t, p.reg, "meshca_trustbundle_conflicts", map[string]string{"object": objectCACerts}))
}

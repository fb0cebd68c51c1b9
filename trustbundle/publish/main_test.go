package publish

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/test/kubeenv"
	"github.com/meshca/meshca/test/logbuf"
)

// env is one kube-apiserver for the whole package. v1beta1
// ClusterTrustBundles are switched on next to v1 so that the v1beta1 path
// can be exercised too. Open watches (the publisher's informers) would hold
// a stopping apiserver for its whole 60s shutdown timeout; a short watch
// grace period lets the outage test stop it in about a second.
var env *kubeenv.Env

func TestMain(m *testing.M) {
	os.Exit(kubeenv.RunMain(m, &env,
		kubeenv.WithoutDefaultCRDs(),
		kubeenv.WithAPIServerFlag("runtime-config", "certificates.k8s.io/v1beta1/clustertrustbundles=true"),
		kubeenv.WithAPIServerFlag("shutdown-watch-termination-grace-period", "1s"),
	))
}

const (
	istiod      = config.DefaultIstiodNamespace
	workload    = config.DefaultWorkloadSigner
	restoreTime = 5 * time.Second
)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

var (
	rbacOnce   sync.Once
	rbacConfig *rest.Config
	rbacClient kubernetes.Interface
	rbacErr    error
)

// meshcaClient applies deploy/rbac once and returns a client that
// authenticates as the ServiceAccount istio-system/meshca it binds.
func meshcaClient(t *testing.T) kubernetes.Interface {
	t.Helper()
	rbacOnce.Do(func() {
		ctx := context.Background()
		if rbacErr = env.CreateNamespace(ctx, istiod); rbacErr != nil {
			return
		}
		rootDir, err := kubeenv.RepoRoot()
		if err != nil {
			rbacErr = err
			return
		}
		for _, f := range []string{"serviceaccount.yaml", "trustbundle.yaml"} {
			if _, rbacErr = env.ApplyYAMLFile(ctx, filepath.Join(rootDir, "deploy", "rbac", f)); rbacErr != nil {
				return
			}
		}
		rbacConfig, rbacClient, rbacErr = env.ClientAs(ctx, istiod, "meshca")
	})
	require.NoError(t, rbacErr)
	return rbacClient
}

// newManager is a controller-runtime manager over rc whose cache is
// restricted by p.Cache, as meshca's shared manager
// (issuer/kubesigner.NewManager) builds it, without leader election.
func newManager(t *testing.T, rc *rest.Config, p *Publisher, log *slog.Logger) ctrl.Manager {
	t.Helper()
	scheme := runtime.NewScheme()
	require.NoError(t, clientgoscheme.AddToScheme(scheme))
	mgr, err := ctrl.NewManager(rc, ctrl.Options{
		Scheme:                 scheme,
		Logger:                 logr.FromSlogHandler(log.Handler()),
		Cache:                  cache.Options{ByObject: p.Cache()},
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	require.NoError(t, err)
	require.NoError(t, p.SetupWithManager(mgr))
	return mgr
}

// running is a Publisher started by startPublisher.
type running struct {
	*Publisher
	reg  *prometheus.Registry
	done chan error
	stop func()
}

// startPublisher runs a Publisher on a manager as the meshca
// ServiceAccount until the test ends (or stop is called) and checks that
// the manager stops cleanly.
func startPublisher(t *testing.T, cfg config.TrustBundleConfig, opts ...Option) *running {
	t.Helper()
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(logbuf.ForTest(t), &slog.HandlerOptions{Level: slog.LevelInfo}))
	all := append([]Option{WithRegisterer(reg), WithLogger(log)}, opts...)
	p, err := New(meshcaClient(t), cfg, all...)
	require.NoError(t, err)
	require.NoError(t, p.Discover(testContext(t)))
	mgr := newManager(t, rbacConfig, p, log)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Publisher: p, reg: reg, done: make(chan error, 1)}
	go func() { r.done <- mgr.Start(ctx) }()
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-r.done:
				require.NoError(t, err)
			case <-time.After(15 * time.Second):
				t.Error("the manager did not stop within 15s of cancellation")
			}
		})
	}
	t.Cleanup(r.stop)
	return r
}

// waitFor polls check until it returns nil, failing the test with the last
// error when within passes. It returns how long it took.
func waitFor(t *testing.T, within time.Duration, what string, check func() error) time.Duration {
	t.Helper()
	start := time.Now()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s: not within %s: %v", what, within, err)
		}
		<-tick.C
	}
}

// metricValue returns the value of the gauge or counter name{labels}.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s%v not found", name, labels)
	return 0
}

// testCA is a throwaway root with an intermediate under it.
type testCA struct {
	root   *x509.Certificate
	bundle *root.Bundle
	key    crypto.Signer
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	now := time.Now()
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	r, err := root.NewSelfSignedRoot(rootKey, name+" root", "meshca test", 24*time.Hour, now)
	require.NoError(t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	inter, err := root.MintIntermediate(r, rootKey, key.Public(), root.IntermediateTemplate{
		CommonName: name + " intermediate", Organization: "meshca test", Lifetime: 12 * time.Hour,
	}, now)
	require.NoError(t, err)
	return &testCA{root: r, key: key, bundle: &root.Bundle{Cert: inter, Roots: []*x509.Certificate{r}}}
}

// desired is the Desired for this CA signing, trusting roots (its own root
// when none are given).
func (c *testCA) desired(crls []byte, roots ...*x509.Certificate) Desired {
	return Desired{Bundle: c.bundle, Key: c.key, CRLs: crls, Roots: roots}
}

// crl returns a PEM CRL signed by the intermediate revoking n serials.
func (c *testCA) crl(t *testing.T, n int) []byte {
	t.Helper()
	entries := make([]x509.RevocationListEntry, n)
	now := time.Now()
	for i := range entries {
		entries[i] = x509.RevocationListEntry{SerialNumber: big.NewInt(int64(1_000_000_000 + i)), RevocationTime: now}
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(int64(n) + 1), ThisUpdate: now, NextUpdate: now.Add(time.Hour),
		RevokedCertificateEntries: entries,
	}, c.bundle.Cert, c.key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}

// deleteCACertsSecret removes cacerts as admin so that a test starts from
// a cluster without it.
func deleteCACertsSecret(t *testing.T) {
	t.Helper()
	meshcaClient(t) // istio-system and the RBAC exist from the first test on
	err := env.Client.CoreV1().Secrets(istiod).Delete(testContext(t), SecretName, metav1.DeleteOptions{})
	if !apierrors.IsNotFound(err) {
		require.NoError(t, err)
	}
}

func getSecret(t *testing.T) (*corev1.Secret, error) {
	return env.Client.CoreV1().Secrets(istiod).Get(testContext(t), SecretName, metav1.GetOptions{})
}

// configMapData returns key of ConfigMap ns/name, or an error when absent.
func configMapData(t *testing.T, ns, name, key string) (string, error) {
	cm, err := env.Client.CoreV1().ConfigMaps(ns).Get(testContext(t), name, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	if cm.Labels[LabelIstioConfig] != "true" || cm.Labels[LabelManagedBy] != FieldManager {
		return "", fmt.Errorf("ConfigMap %s/%s has labels %v", ns, name, cm.Labels)
	}
	return cm.Data[key], nil
}

func wantConfigMap(t *testing.T, ns, name, key, want string) func() error {
	return func() error {
		got, err := configMapData(t, ns, name, key)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("ConfigMap %s/%s %s holds %d bytes, want %d", ns, name, key, len(got), len(want))
		}
		return nil
	}
}

// queryRoots does what a projected clusterTrustBundle volume with
// {signerName, labelSelector} does: it merges every matching bundle's
// certificates, deduplicated.
func queryRoots(t *testing.T, signer string) ([]*x509.Certificate, error) {
	list, err := env.Client.CertificatesV1().ClusterTrustBundles().List(testContext(t), metav1.ListOptions{
		LabelSelector: BundleLabelSelector(signer),
		FieldSelector: "spec.signerName=" + signer,
	})
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for _, b := range list.Items {
		certs, err := root.ParseCertificates([]byte(b.Spec.TrustBundle))
		if err != nil {
			return nil, fmt.Errorf("bundle %s: %w", b.Name, err)
		}
		for _, c := range certs {
			if !containsCert(out, c) {
				out = append(out, c)
			}
		}
	}
	return out, nil
}

// wantQueryRoots checks that the signer query returns exactly roots.
func wantQueryRoots(t *testing.T, signer string, roots ...*x509.Certificate) func() error {
	return func() error {
		got, err := queryRoots(t, signer)
		if err != nil {
			return err
		}
		if len(got) != len(roots) || !sameCertSet(root.EncodePEM(got...), roots) {
			return fmt.Errorf("query %s/%s returns %d roots %v, want %v", signer, BundleLabelSelector(signer), len(got), subjects(got), subjects(roots))
		}
		return nil
	}
}

func subjects(certs []*x509.Certificate) []string {
	var out []string
	for _, c := range certs {
		out = append(out, c.Subject.CommonName)
	}
	return out
}

func getBundle(t *testing.T, name string) (*certificatesv1.ClusterTrustBundle, error) {
	return env.Client.CertificatesV1().ClusterTrustBundles().Get(testContext(t), name, metav1.GetOptions{})
}

// bundleNames lists meshca's ClusterTrustBundles for signer.
func bundleNames(t *testing.T, signer string) []string {
	list, err := env.Client.CertificatesV1().ClusterTrustBundles().List(testContext(t), metav1.ListOptions{
		LabelSelector: BundleLabelSelector(signer),
	})
	require.NoError(t, err)
	var names []string
	for _, b := range list.Items {
		names = append(names, b.Name)
	}
	slices.Sort(names)
	return names
}

// eventsFor lists the Events in ns about object name with reason.
func eventsFor(t *testing.T, ns, name, reason string) []corev1.Event {
	list, err := env.Client.CoreV1().Events(ns).List(testContext(t), metav1.ListOptions{
		FieldSelector: "involvedObject.name=" + name + ",reason=" + reason,
	})
	require.NoError(t, err)
	return list.Items
}

func createNamespace(t *testing.T, name string, labels map[string]string) {
	t.Helper()
	_, err := env.Client.CoreV1().Namespaces().Create(testContext(t),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{})
	require.NoError(t, err)
}

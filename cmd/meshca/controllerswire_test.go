package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/issuer/kubesigner"
	"github.com/meshca/meshca/test/kubeenv"
	"github.com/meshca/meshca/test/logbuf"
	"github.com/meshca/meshca/trustbundle/publish"
)

// readCounter counts the list and watch requests that reach the
// apiserver, by path and selectors.
type readCounter struct {
	mu   sync.Mutex
	seen map[string]int
	next http.RoundTripper
}

func (c *readCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodGet {
		q := r.URL.Query()
		verb := "LIST"
		if q.Get("watch") == "true" || q.Get("watch") == "1" {
			verb = "WATCH"
		}
		key := verb + " " + r.URL.Path
		if s := q.Get("labelSelector"); s != "" {
			key += " labels=" + s
		}
		if s := q.Get("fieldSelector"); s != "" {
			key += " fields=" + s
		}
		c.mu.Lock()
		c.seen[key]++
		c.mu.Unlock()
	}
	return c.next.RoundTrip(r)
}

// watches returns the WATCH requests seen, by path and selectors.
func (c *readCounter) watches() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for k, n := range c.seen {
		if len(k) > 6 && k[:6] == "WATCH " {
			out[k[6:]] = n
		}
	}
	return out
}

// podProbe stands for a signer on the same manager: it restricts a kind
// the publisher does not watch (Pods, by label) and watches Namespaces,
// which the publisher watches too.
type podProbe struct {
	mu         sync.Mutex
	namespaces map[string]bool
}

func (*podProbe) Name() string                      { return "probe" }
func (*podProbe) AddToScheme(*runtime.Scheme) error { return nil }
func (*podProbe) Cache() map[client.Object]cache.ByObject {
	return map[client.Object]cache.ByObject{&corev1.Pod{}: {Label: labels.SelectorFromSet(labels.Set{"probe": "yes"})}}
}

func (p *podProbe) SetupWithManager(mgr ctrl.Manager, m *kubesigner.Metrics) error {
	// meshca's own controller options, as a signer has them: with them
	// the test runs again in one process (go test -count=2).
	return builder.ControllerManagedBy(mgr).Named(p.Name()).
		WithOptions(kubesigner.ControllerOptions(m, 1)).
		For(&corev1.Namespace{}).
		Watches(&corev1.Pod{}, &handler.EnqueueRequestForObject{}).
		Complete(reconcile.Func(func(_ context.Context, r reconcile.Request) (reconcile.Result, error) {
			p.mu.Lock()
			defer p.mu.Unlock()
			p.namespaces[r.Name] = true
			return reconcile.Result{}, nil
		}))
}

func (p *podProbe) saw(ns string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.namespaces[ns]
}

// The trust publisher and a signer run on one manager and one cache:
// every kind is watched once, Namespaces too although both watch them,
// and with exactly the publisher's selectors (meshca's ConfigMaps and
// ClusterTrustBundles by label, the one Secret cacerts by name in
// istiod's namespace), so the cache holds no more than its own informers
// did.
func TestControllers_OneManagerWatchesEachKindOnce(t *testing.T) {
	env, err := kubeenv.Start(kubeenv.WithoutDefaultCRDs())
	require.NoError(t, err)
	t.Cleanup(env.Stop)
	ctx, cancel := context.WithCancel(t.Context())
	require.NoError(t, env.CreateNamespace(ctx, "istio-system"))
	require.NoError(t, env.CreateNamespace(ctx, "shop"))

	counter := &readCounter{seen: map[string]int{}}
	rc := rest.CopyConfig(env.Config)
	rc.Wrap(func(next http.RoundTripper) http.RoundTripper { counter.next = next; return counter })

	cfg := config.Defaults(t.TempDir())
	cfg.TrustBundle.Enabled = true
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	// The publisher's own client (writes, discovery, the live read of
	// cacerts) goes through the counter too: an informer of its own would
	// be seen.
	client, err := kubernetes.NewForConfig(rc)
	require.NoError(t, err)
	p, err := publish.New(client, cfg.TrustBundle, publish.WithLogger(log))
	require.NoError(t, err)
	trust := &trustPublisher{p: p, log: log}
	probe := &podProbe{namespaces: map[string]bool{}}

	wait, err := startControllers(ctx, controllerDeps{cfg: cfg, rc: rc, log: log, reg: prometheus.NewRegistry()},
		[]kubesigner.Controller{trust.controller(), probe}, func(err error) { t.Errorf("controllers stopped: %v", err) })
	require.NoError(t, err)
	t.Cleanup(func() { cancel(); wait() })
	require.Eventually(t, func() bool { return p.HasSynced() && probe.saw("shop") }, 30*time.Second, 20*time.Millisecond,
		"the publisher and the probe run")
	require.Eventually(t, func() bool { return len(counter.watches()) == 5 }, 10*time.Second, 20*time.Millisecond,
		"five kinds watched: %v", counter.watches())

	want := map[string]int{
		"/api/v1/namespaces": 1,
		"/api/v1/configmaps labels=" + publish.LabelManagedBy + "=meshca":                               1,
		"/api/v1/namespaces/istio-system/secrets fields=metadata.name=cacerts":                          1,
		"/apis/certificates.k8s.io/v1/clustertrustbundles labels=" + publish.LabelManagedBy + "=meshca": 1,
		"/api/v1/pods labels=probe=yes":                                                                 1,
	}
	require.Equal(t, want, counter.watches(), "watched: %v", slices.Sorted(maps.Keys(counter.watches())))
}

// missingKindProbe is a controller that watches cert-manager's
// CertificateRequests, as the cert-manager issuer does, on an apiserver
// that serves them only once their CRD is installed.
type missingKindProbe struct{}

func (missingKindProbe) Name() string                            { return "missing-kind-probe" }
func (missingKindProbe) AddToScheme(s *runtime.Scheme) error     { return cmapi.AddToScheme(s) }
func (missingKindProbe) Cache() map[client.Object]cache.ByObject { return nil }
func (p missingKindProbe) SetupWithManager(mgr ctrl.Manager, m *kubesigner.Metrics) error {
	// An index, as the issuer's request controller keeps one: setting it
	// up needs the kind's REST mapping.
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &cmapi.CertificateRequest{}, "probe", func(o client.Object) []string {
		return []string{o.GetName()}
	}); err != nil {
		return err
	}
	return builder.ControllerManagedBy(mgr).Named(p.Name()).
		WithOptions(kubesigner.ControllerOptions(m, 1)).
		For(&cmapi.CertificateRequest{}).
		Complete(reconcile.Func(func(context.Context, reconcile.Request) (reconcile.Result, error) { return reconcile.Result{}, nil }))
}

// A controller whose kind is not served (cert-manager's CRDs not
// installed, with the cert-manager issuer enabled) does not end serve,
// which would take the Istio endpoint down with it and crash-loop: the
// controllers wait, saying why, and start once the CRD is installed.
func TestControllers_AKindNotServedYetIsWaitedFor(t *testing.T) {
	env, err := kubeenv.Start(kubeenv.WithoutDefaultCRDs())
	require.NoError(t, err)
	t.Cleanup(env.Stop)
	var logs logbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	type built struct {
		mgr ctrl.Manager
		err error
	}
	done := make(chan built, 1)
	reg := prometheus.NewRegistry()
	go func() {
		mgr, err := newManager(ctx, log, env.Config, kubesigner.ManagerOptions{Log: log, Metrics: kubesigner.NewMetrics(reg)}, []kubesigner.Controller{missingKindProbe{}})
		done <- built{mgr, err}
	}()
	require.Eventually(t, func() bool {
		return strings.Contains(logs.String(), "a kind the Kubernetes controllers watch is not served by the apiserver (is its CRD installed?)")
	}, 30*time.Second, 20*time.Millisecond, "the wait is explained")
	requireWaiting(t, reg, kubesigner.WaitKindNotServed)
	select {
	case b := <-done:
		t.Fatalf("the manager's setup ended while the kind is not served: %v", b.err)
	default:
	}
	installCertificateRequestCRD(ctx, t, env)
	select {
	case b := <-done:
		require.NoError(t, b.err)
		require.NotNil(t, b.mgr)
	case <-time.After(45 * time.Second):
		t.Fatal("the manager was not built once the CRD was installed")
	}
}

// blockedPreparer waits in Prepare until ctx ends, as the trust
// publisher's discovery does while the apiserver does not answer.
type blockedPreparer struct{ missingKindProbe }

func (blockedPreparer) Prepare(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}

// An apiserver that does not answer, while a controller prepares or while
// the manager is set up, is the reason the controllers wait.
func TestControllers_AnUnreachableAPIServerIsTheReasonTheyWait(t *testing.T) {
	rc := &rest.Config{Host: "https://127.0.0.1:1", Timeout: time.Second} // nothing listens on port 1
	for name, c := range map[string]kubesigner.Controller{"prepare": blockedPreparer{}, "set up": missingKindProbe{}} {
		t.Run(name, func(t *testing.T) {
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			reg := prometheus.NewRegistry()
			opts := kubesigner.ManagerOptions{Log: log, Metrics: kubesigner.NewMetrics(reg)}
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() {
				_, err := newManager(ctx, log, rc, opts, []kubesigner.Controller{c})
				done <- err
			}()
			require.Eventually(t, func() bool { return waitingIs(reg, kubesigner.WaitAPIServer) == nil }, prepareSlow+10*time.Second, 50*time.Millisecond,
				"the apiserver is the reason")
			cancel()
			require.ErrorIs(t, <-done, context.Canceled)
		})
	}
}

// A kind the controllers index that meshca's RBAC may not list: the
// manager waits for its cache without a timeout, so the gauge says it once
// the wait outlasts the sync timeout, and clears once RBAC allows it and
// the controllers run. This is serve's manager: no election of its own.
func TestControllers_AnIndexedKindTheyMayNotListIsTheReasonTheyWait(t *testing.T) {
	env, err := kubeenv.Start()
	require.NoError(t, err)
	t.Cleanup(env.Stop)
	ctx, cancel := context.WithCancel(t.Context())
	require.NoError(t, env.CreateNamespace(ctx, "meshca"))
	rc, _, err := env.ClientAs(ctx, "meshca", "meshca") // no RBAC yet
	require.NoError(t, err)
	var logs logbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	reg := prometheus.NewRegistry()
	cfg := config.Defaults(t.TempDir())
	deps := controllerDeps{cfg: cfg, rc: rc, log: log, reg: reg, runningAfter: 3 * time.Second}
	failed := make(chan error, 1)
	wait, err := startControllers(ctx, deps, []kubesigner.Controller{missingKindProbe{}}, func(err error) { failed <- err })
	require.NoError(t, err)
	t.Cleanup(func() { cancel(); wait() })

	require.Eventually(t, func() bool { return waitingIs(reg, kubesigner.WaitCachesNotSynced) == nil }, 30*time.Second, 50*time.Millisecond,
		"the forbidden list is the reason")
	require.Contains(t, logs.String(), "the Kubernetes controllers' caches have not synced")

	_, err = env.ApplyYAML(ctx, []byte(`apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: read-certificaterequests}
rules:
- apiGroups: [cert-manager.io]
  resources: [certificaterequests]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: meshca-reads-certificaterequests}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: read-certificaterequests}
subjects:
- {kind: ServiceAccount, name: meshca, namespace: meshca}
`))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return waitingIs(reg, "") == nil }, 90*time.Second, 100*time.Millisecond,
		"cleared once the controllers run:\n%s", logs.String())
	select {
	case err := <-failed:
		t.Fatalf("serve was ended: %v", err)
	default:
	}
}

// syncProbe is podProbe with informers of its own, as the trust publisher
// has: it says when they have synced.
type syncProbe struct {
	*podProbe
	synced atomic.Bool
}

func (p *syncProbe) HasSynced() bool { return p.synced.Load() }

// A controller that waits for informers of its own once the manager runs
// it (the trust publisher, RBAC that denies one of its kinds): the
// manager's caches sync, but the gauge says caches_not_synced until that
// controller's have too, and is cleared then.
func TestControllers_AControllersOwnInformersThatDoNotSyncAreTheReasonTheyWait(t *testing.T) {
	env, err := kubeenv.Start(kubeenv.WithoutDefaultCRDs())
	require.NoError(t, err)
	t.Cleanup(env.Stop)
	ctx, cancel := context.WithCancel(t.Context())
	reg := prometheus.NewRegistry()
	var logs logbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	probe := &syncProbe{podProbe: &podProbe{namespaces: map[string]bool{}}}
	deps := controllerDeps{cfg: config.Defaults(t.TempDir()), rc: env.Config, log: log, reg: reg, runningAfter: 2 * time.Second}
	wait, err := startControllers(ctx, deps, []kubesigner.Controller{probe}, func(err error) { t.Errorf("controllers stopped: %v", err) })
	require.NoError(t, err)
	t.Cleanup(func() { cancel(); wait() })
	require.Eventually(t, func() bool { return probe.saw("default") }, 30*time.Second, 20*time.Millisecond, "the manager runs")
	require.Eventually(t, func() bool { return waitingIs(reg, kubesigner.WaitCachesNotSynced) == nil }, 30*time.Second, 50*time.Millisecond,
		"the controller's own informers are the reason")
	require.Contains(t, logs.String(), "a Kubernetes controller's informers have not synced")
	probe.synced.Store(true)
	require.Eventually(t, func() bool { return waitingIs(reg, "") == nil }, 10*time.Second, 50*time.Millisecond, "cleared once they have")
}

// watchOnlyProbe watches cert-manager's CertificateRequests with no index
// (as the MeshIssuer controller watches its kinds): a missing kind shows
// only when the caches do not sync. Its sync timeout is short for the
// test; seen is closed at its first reconcile.
type watchOnlyProbe struct {
	once sync.Once
	seen chan struct{}
}

func (*watchOnlyProbe) Name() string                            { return "watch-only-probe" }
func (*watchOnlyProbe) AddToScheme(s *runtime.Scheme) error     { return cmapi.AddToScheme(s) }
func (*watchOnlyProbe) Cache() map[client.Object]cache.ByObject { return nil }
func (p *watchOnlyProbe) SetupWithManager(mgr ctrl.Manager, m *kubesigner.Metrics) error {
	o := kubesigner.ControllerOptions(m, 1)
	o.CacheSyncTimeout = 2 * time.Second
	return builder.ControllerManagedBy(mgr).Named(p.Name()).WithOptions(o).
		For(&cmapi.CertificateRequest{}).
		Complete(reconcile.Func(func(context.Context, reconcile.Request) (reconcile.Result, error) {
			p.once.Do(func() { close(p.seen) })
			return reconcile.Result{}, nil
		}))
}

// A kind only watched, not served (meshca's MeshIssuer CRDs left out of
// an install, PodCertificateRequests on a cluster without them): the
// caches never sync, and that does not end serve either; the controllers
// start again with backoff and run once the kind is served.
func TestControllers_CachesThatDoNotSyncAreStartedAgain(t *testing.T) {
	env, err := kubeenv.Start(kubeenv.WithoutDefaultCRDs())
	require.NoError(t, err)
	t.Cleanup(env.Stop)
	var logs logbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ctx, cancel := context.WithCancel(t.Context())
	require.NoError(t, env.CreateNamespace(ctx, "istio-system")) // the Lease's
	probe := &watchOnlyProbe{seen: make(chan struct{})}
	failed := make(chan error, 1)
	reg := prometheus.NewRegistry()
	// The probe's informers time out after 2 s: a start that runs 4 s
	// runs.
	deps := controllerDeps{cfg: config.Defaults(t.TempDir()), rc: env.Config, log: log, reg: reg, runningAfter: 4 * time.Second}
	wait, err := startControllers(ctx, deps, []kubesigner.Controller{probe}, func(err error) { failed <- err })
	require.NoError(t, err)
	t.Cleanup(func() { cancel(); wait() })
	require.Eventually(t, func() bool {
		return strings.Contains(logs.String(), "the Kubernetes controllers' caches did not sync")
	}, 30*time.Second, 20*time.Millisecond, "the wait is explained:\n%s", logs.String())
	requireWaiting(t, reg, kubesigner.WaitCachesNotSynced)
	select {
	case err := <-failed:
		t.Fatalf("serve was ended: %v", err)
	default:
	}

	installCertificateRequestCRD(ctx, t, env)
	require.NoError(t, env.CreateNamespace(ctx, "probe"))
	_, err = env.ApplyYAML(ctx, []byte("apiVersion: cert-manager.io/v1\nkind: CertificateRequest\nmetadata: {name: probe, namespace: probe}\nspec:\n  request: TFMwdExTMUNSVWRKVGc9PQ==\n  issuerRef: {name: x}\n"))
	require.NoError(t, err)
	select {
	case <-probe.seen:
	case err := <-failed:
		t.Fatalf("serve was ended: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatalf("the controllers did not start once the kind was served:\n%s", logs.String())
	}
	require.Eventually(t, func() bool { return waitingIs(reg, "") == nil }, 30*time.Second, 50*time.Millisecond, "cleared once the controllers run")
	cancel()
	wait()
	require.NoError(t, waitingIs(reg, ""), "a replica that stopped is not meant to run them")
}

// waitingIs compares meshca_controllers_waiting in g with 1 for reason
// and 0 for the other reasons (all 0 for "").
func waitingIs(g prometheus.Gatherer, reason kubesigner.WaitReason) error {
	mfs, err := g.Gather()
	if err != nil {
		return err
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "meshca_controllers_waiting" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" {
					got[l.GetValue()] = m.GetGauge().GetValue()
				}
			}
		}
	}
	want := map[string]float64{}
	for _, r := range []kubesigner.WaitReason{kubesigner.WaitAPIServer, kubesigner.WaitKindNotServed, kubesigner.WaitCachesNotSynced} {
		want[string(r)] = 0
	}
	if reason != "" {
		want[string(reason)] = 1
	}
	if !maps.Equal(got, want) {
		return fmt.Errorf("meshca_controllers_waiting is %v, want %v", got, want)
	}
	return nil
}

func requireWaiting(t *testing.T, g prometheus.Gatherer, reason kubesigner.WaitReason) {
	t.Helper()
	require.NoError(t, waitingIs(g, reason))
}

// installCertificateRequestCRD installs cert-manager's CertificateRequest
// CRD (from its Go module) on env.
func installCertificateRequestCRD(ctx context.Context, t *testing.T, env *kubeenv.Env) {
	t.Helper()
	root, err := kubeenv.RepoRoot()
	require.NoError(t, err)
	out, err := exec.Command("go", "-C", root, "list", "-m", "-f", "{{.Dir}}", "github.com/cert-manager/cert-manager").Output()
	require.NoError(t, err)
	_, err = env.ApplyYAMLFile(ctx, filepath.Join(strings.TrimSpace(string(out)), "deploy", "crds", "cert-manager.io_certificaterequests.yaml"))
	require.NoError(t, err)
}

// controller-runtime v0.25's manager, stopped while the caches of the
// kinds indexed at setup sync, never returns from Start (its start loop
// waits on its done context). startBounded gives it stopWait after its
// context ends and then reports it stuck, so that serve restarts instead
// of never campaigning again; a start that returns is waited for.
func TestStartBounded_AStartThatIgnoresItsEndIsReportedStuck(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	release := make(chan struct{})
	defer close(release)
	time.AfterFunc(50*time.Millisecond, cancel)
	began := time.Now()
	stuck, err := startBounded(ctx, func(context.Context) error { <-release; return nil }, 200*time.Millisecond)
	require.True(t, stuck)
	require.NoError(t, err)
	require.GreaterOrEqual(t, time.Since(began), 250*time.Millisecond, "stopWait counted from the end of ctx")

	ctx, cancel = context.WithCancel(t.Context())
	time.AfterFunc(50*time.Millisecond, cancel)
	stuck, err = startBounded(ctx, func(ctx context.Context) error {
		<-ctx.Done()
		time.Sleep(20 * time.Millisecond) // a graceful stop
		return errors.New("stopped")
	}, 10*time.Second)
	require.False(t, stuck)
	require.EqualError(t, err, "stopped")

	stuck, err = startBounded(t.Context(), func(context.Context) error { return errors.New("caches did not sync") }, time.Second)
	require.False(t, stuck)
	require.EqualError(t, err, "caches did not sync")
}

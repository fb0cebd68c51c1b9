// Package publish owns meshca's trust distribution into Kubernetes: the
// Istio plug-in CA Secret `cacerts` in istiod's namespace (Istio docs, "Plug in CA Certificates"),
// the `istio-ca-root-cert` and CRL ConfigMaps in every selected namespace
// (§3), ClusterTrustBundles for meshca's signers and, optionally,
// istiod's (§8), one ClusterTrustBundle per federated foreign trust domain
// (SetFederated, fed by trustbundle/federation), and the post-quantum trust anchors (the ConfigMap
// meshca-pq-trust-anchors in istiod's namespace and an annotation on the
// signers' bundles).
//
// A Publisher holds the desired trust material in memory (Update) and
// reconciles the cluster to it from informer events through a rate-limited
// workqueue. It runs on a controller-runtime manager shared with meshca's
// other controllers (SetupWithManager): its informers are the manager's
// cache, restricted by Cache, so that meshca watches each kind once, and
// it writes only on the replica that runs the manager (serve runs it under the Lease of its singleton jobs), so that an edited or deleted object is restored within seconds
// and an apiserver outage only delays the next write. Every write is a
// server-side apply with field manager "meshca". It never overwrites a
// cacerts Secret it does not own unless told to take ownership, never
// deletes a Secret or an Istio ConfigMap, and deletes only the
// ClusterTrustBundles and post-quantum anchors ConfigMap that carry its
// managed-by label, once they are no longer wanted. What goes into cacerts, and the byte-append
// rule for root-cert.pem, belong to trustbundle/cacerts; signing and
// rotation belong to ca/.
package publish

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	ctrlcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/rotation/alert"
	"github.com/meshca/meshca/trustbundle/bundleversion"
)

// Names and labels of what meshca publishes.
const (
	// FieldManager is the server-side-apply field manager of every write.
	FieldManager = "meshca"
	// SecretName is Istio's plug-in CA Secret.
	SecretName = "cacerts"
	// RootConfigMapName is the namespace root ConfigMap istio-agent reads.
	RootConfigMapName = "istio-ca-root-cert"
	// LabelManagedBy marks every object meshca owns.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// LabelIstioConfig is the label Istio puts on its ConfigMaps.
	LabelIstioConfig = "istio.io/config"
	// LabelTrustBundle groups the ClusterTrustBundles of one signer, so that
	// a projected volume selects them with {signerName, labelSelector}.
	LabelTrustBundle = "meshca.io/trust-bundle"
	// IstiodSignerName and IstiodBundleName are istiod's own bundle.
	IstiodSignerName = "istio.io/istiod-ca"
	IstiodBundleName = "istio.io:istiod-ca:root-cert"
)

// Keys of the ConfigMaps (Istio's).
const (
	rootConfigMapKey = "root-cert.pem"
	crlConfigMapKey  = "ca-crl.pem"
)

const managedBySelector = LabelManagedBy + "=" + FieldManager

// Workqueue keys. Namespaces are queued as nsKeyPrefix+name.
const (
	keySecret        = "secret"
	keyTrustBundles  = "clustertrustbundles"
	keyAllNamespaces = "namespaces"
	keyPQAnchors     = "pq-anchors"
	nsKeyPrefix      = "ns/"
)

// syncTimeout bounds one reconcile, so that a hung connection cannot stall
// a worker.
const syncTimeout = 30 * time.Second

// Publisher reconciles the cluster to the desired trust material.
type Publisher struct {
	client    kubernetes.Interface
	namespace string // istiod's
	takeOwner bool
	excluded  map[string]bool
	selector  labels.Selector
	crlName   string
	signers   []string
	istiodCTB bool
	ctbOn     bool

	log      *slog.Logger
	clock    clock.WithTicker
	metrics  *metrics
	problems *problems
	resync   time.Duration
	workers  int
	// queue is the current run's work queue (Start makes a fresh one
	// for each run after the first: a replica may lead again, and a
	// queue that was shut down takes nothing more).
	queue    atomic.Pointer[workqueue.TypedRateLimitingInterface[string]]
	newQueue func() workqueue.TypedRateLimitingInterface[string]
	runs     atomic.Int64

	desired atomic.Pointer[state]
	running atomic.Bool
	synced  atomic.Bool

	// ctbVersion is the ClusterTrustBundle version written ("" for none),
	// known once discovered.
	ctbVersion string
	discovered bool

	// cache is the shared controller-runtime cache (SetupWithManager).
	cache   ctrlcache.Cache
	mu      sync.Mutex
	unwatch []func()
	ctb     atomic.Pointer[bundleAPI]
	// federated are the foreign trust domains' bundles (SetFederated).
	federated atomic.Pointer[federatedState]
}

type options struct {
	log        *slog.Logger
	registerer prometheus.Registerer
	clock      clock.WithTicker
	resync     time.Duration
	baseDelay  time.Duration
	maxDelay   time.Duration
	workers    int
	ctbVersion string
	alerts     Alerter
}

// Option configures New.
type Option func(*options)

// WithLogger sets the structured logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithRegisterer registers the meshca_trustbundle_* metrics with r.
func WithRegisterer(r prometheus.Registerer) Option { return func(o *options) { o.registerer = r } }

// WithClock sets the clock of the workqueue's delays, Event timestamps and
// metrics (default the real clock).
func WithClock(c clock.WithTicker) Option { return func(o *options) { o.clock = c } }

// WithResync sets how often every object is compared with the desired
// state even without events, as a safety net (default 10m; 0 turns it off),
// on the Publisher's clock.
func WithResync(d time.Duration) Option { return func(o *options) { o.resync = d } }

// WithRetryBackoff sets the per-object retry delay after a failed write:
// base, doubled on each failure, up to max (default 100ms up to 10s).
func WithRetryBackoff(base, max time.Duration) Option {
	return func(o *options) { o.baseDelay, o.maxDelay = base, max }
}

// WithWorkers sets how many objects are reconciled in parallel (default 2).
func WithWorkers(n int) Option { return func(o *options) { o.workers = n } }

// WithAlerts raises and clears the Publisher's problems (a foreign
// cacerts Secret, content over a Kubernetes size limit) as alerts of the
// engine a, which persists them and notifies its sinks (default: a private
// engine that only keeps them in memory).
func WithAlerts(a Alerter) Option { return func(o *options) { o.alerts = a } }

// WithClusterTrustBundleVersion skips discovery and uses version ("v1" or
// "v1beta1") of certificates.k8s.io for ClusterTrustBundles.
func WithClusterTrustBundleVersion(v string) Option {
	return func(o *options) { o.ctbVersion = v }
}

// New returns a Publisher for cfg that writes with client (built from the
// kubernetes section of the configuration). It does not look at cfg.Enabled: whether to run a
// Publisher is the caller's decision. Nothing is published until Update has
// been called and the Publisher runs on a manager (SetupWithManager).
func New(client kubernetes.Interface, cfg config.TrustBundleConfig, opts ...Option) (*Publisher, error) {
	o := &options{
		log:       slog.Default(),
		clock:     clock.RealClock{},
		resync:    10 * time.Minute,
		baseDelay: 100 * time.Millisecond,
		maxDelay:  10 * time.Second,
		workers:   2,
	}
	for _, opt := range opts {
		opt(o)
	}
	cfg.Init()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	sel, err := labels.Parse(cfg.NamespaceSelector)
	if err != nil {
		return nil, fmt.Errorf("publish: trustBundle.namespaceSelector: %w", err)
	}
	switch o.ctbVersion {
	case "", "v1", "v1beta1":
	default:
		return nil, fmt.Errorf("publish: ClusterTrustBundle version %q is not v1 or v1beta1", o.ctbVersion)
	}
	if o.workers < 1 {
		o.workers = 1
	}
	m := newMetrics(o.registerer)
	alerts := o.alerts
	if alerts == nil {
		// Without the shared engine the problems are still tracked (for
		// the Events and the gauges), in memory and without sinks.
		e, err := alert.New(context.Background(), alert.Options{Clock: o.clock, Log: o.log})
		if err != nil {
			return nil, fmt.Errorf("publish: %w", err)
		}
		alerts = e
	}
	p := &Publisher{
		client:     client,
		namespace:  cfg.IstiodNamespace,
		takeOwner:  cfg.TakeOwnership,
		excluded:   map[string]bool{},
		selector:   sel,
		crlName:    cfg.CRLConfigMapName,
		signers:    slices.Clone(cfg.ClusterTrustBundles.SignerNames),
		istiodCTB:  cfg.ClusterTrustBundles.IstiodBundle,
		ctbOn:      cfg.ClusterTrustBundles.On(),
		ctbVersion: o.ctbVersion,
		discovered: o.ctbVersion != "",
		log:        o.log.With("component", "trustbundle"),
		clock:      o.clock,
		metrics:    m,
		problems: &problems{
			alerts:  alerts,
			metrics: m,
			events:  &eventWriter{client: client.CoreV1(), clock: o.clock},
			log:     o.log.With("component", "trustbundle"),
		},
		resync:  o.resync,
		workers: o.workers,
	}
	for _, ns := range cfg.NamespaceExclusions {
		p.excluded[ns] = true
	}
	p.newQueue = func() workqueue.TypedRateLimitingInterface[string] {
		limiter := workqueue.NewTypedMaxOfRateLimiter(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](o.baseDelay, o.maxDelay),
			&workqueue.TypedBucketRateLimiter[string]{Limiter: rate.NewLimiter(rate.Limit(50), 200)},
		)
		// No Name: the queue reports no metrics (meshca_trustbundle_* are
		// the Publisher's), also now that controller-runtime, linked in,
		// sets client-go's global workqueue metrics provider.
		return workqueue.NewTypedRateLimitingQueueWithConfig(limiter, workqueue.TypedRateLimitingQueueConfig[string]{
			Clock: o.clock,
		})
	}
	q := p.newQueue()
	p.queue.Store(&q)
	return p, nil
}

// q is the current run's work queue.
func (p *Publisher) q() workqueue.TypedRateLimitingInterface[string] { return *p.queue.Load() }

// enqueueAll schedules a reconcile of everything.
func (p *Publisher) enqueueAll() {
	q := p.q()
	q.Add(keySecret)
	q.Add(keyTrustBundles)
	q.Add(keyAllNamespaces)
	q.Add(keyPQAnchors)
}

// Update replaces the desired trust material and schedules a reconcile of
// everything. It fails, changing nothing, when d is inconsistent. It does
// not wait for the writes; they happen in Start, on the leader.
func (p *Publisher) Update(ctx context.Context, d Desired) error {
	st, err := compile(d)
	if err != nil {
		return err
	}
	p.desired.Store(st)
	p.log.InfoContext(ctx, "desired trust material updated",
		"roots", len(st.roots), "cacertsSecret", st.files != nil, "crlBytes", len(st.crl), "pqAnchorBytes", len(st.pqAnchors))
	p.enqueueAll()
	return nil
}

// HasSynced reports whether the informers have synced and reconciling has
// started.
func (p *Publisher) HasSynced() bool { return p.synced.Load() }

// Discover finds the version of certificates.k8s.io that serves
// ClusterTrustBundles (unless WithClusterTrustBundleVersion fixed it),
// retrying with backoff while the apiserver cannot be reached. Cache needs
// it: the shared cache can only be restricted for a served type. It
// returns ctx's error if ctx ends first; with ClusterTrustBundles off it
// does nothing.
func (p *Publisher) Discover(ctx context.Context) error {
	if !p.ctbOn || p.discovered {
		return nil
	}
	v, err := bundleversion.Wait(ctx, p.client.Discovery(), p.clock, p.log)
	if err != nil {
		return err
	}
	if v == "" {
		p.log.Warn("the apiserver serves no ClusterTrustBundle API (certificates.k8s.io/v1 or v1beta1); not publishing ClusterTrustBundles")
	}
	p.ctbVersion, p.discovered = v, true
	return nil
}

// SetupWithManager makes the Publisher one of mgr's runnables, reading
// from mgr's cache (which must be restricted by Cache) and reconciling
// only while mgr runs its leader-elected runnables. Call Discover
// first.
func (p *Publisher) SetupWithManager(mgr ctrl.Manager) error {
	if p.ctbOn && !p.discovered {
		return errors.New("publish: Discover must run before the manager is set up")
	}
	p.cache = mgr.GetCache()
	return mgr.Add(p)
}

// NeedLeaderElection is true: one replica at a time writes the trust
// material.
func (p *Publisher) NeedLeaderElection() bool { return true }

// Start watches the cluster through the shared cache and reconciles until
// ctx is done; the manager calls it (once this replica leads). It survives
// an unreachable apiserver (the cache's informers and the writes retry
// with backoff) and returns nil when ctx ends, after its workers have
// stopped. It may be called again once it has returned (a replica that
// leads again, on a new manager after SetupWithManager), never twice at
// once.
func (p *Publisher) Start(ctx context.Context) error {
	if p.cache == nil {
		return errors.New("publish: SetupWithManager was not called")
	}
	if !p.running.CompareAndSwap(false, true) {
		return errors.New("publish: already running")
	}
	defer p.running.Store(false)
	if p.runs.Add(1) > 1 {
		q := p.newQueue()
		p.queue.Store(&q)
		p.enqueueAll()
	}
	queue := p.q()
	defer queue.ShutDown()
	defer p.synced.Store(false)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer p.unwatchAll()

	var synced []toolscache.InformerSynced
	for _, w := range []struct {
		obj client.Object
		h   toolscache.ResourceEventHandler
	}{
		{&corev1.Namespace{}, p.namespaceHandler()},
		{&corev1.ConfigMap{}, p.configMapHandler()},
		{&corev1.Secret{}, p.enqueueOn(keySecret)},
	} {
		reg, err := p.watch(ctx, w.obj, w.h)
		if err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		synced = append(synced, reg.HasSynced)
	}

	var wg sync.WaitGroup
	if p.ctbOn {
		wg.Go(func() { p.runTrustBundles(ctx) })
	}
	if p.resync > 0 {
		wg.Go(func() { p.resyncEvery(ctx) })
	}

	p.log.Info("waiting for informers", "istiodNamespace", p.namespace)
	if !toolscache.WaitForNamedCacheSyncWithContext(ctx, synced...) {
		wg.Wait()
		return nil // ctx ended first
	}
	p.synced.Store(true)
	p.log.Info("informers synced; reconciling")
	for range p.workers {
		wg.Go(func() {
			for p.processNext(ctx) {
			}
		})
	}
	<-ctx.Done()
	queue.ShutDown()
	wg.Wait()
	p.log.Info("trust distribution stopped")
	return nil
}

// watch adds h to the shared cache's informer of obj's kind, without
// waiting for it to sync; the handler is removed when Start returns.
func (p *Publisher) watch(ctx context.Context, obj client.Object, h toolscache.ResourceEventHandler) (toolscache.ResourceEventHandlerRegistration, error) {
	inf, err := p.cache.GetInformer(ctx, obj, ctrlcache.BlockUntilSynced(false))
	if err != nil {
		return nil, fmt.Errorf("watching %T: %w", obj, err)
	}
	reg, err := inf.AddEventHandler(h)
	if err != nil {
		return nil, fmt.Errorf("watching %T: %w", obj, err)
	}
	p.mu.Lock()
	p.unwatch = append(p.unwatch, func() { _ = inf.RemoveEventHandler(reg) })
	p.mu.Unlock()
	return reg, nil
}

func (p *Publisher) unwatchAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.unwatch {
		f()
	}
	p.unwatch = nil
}

// resyncEvery queues everything every p.resync: a safety net that compares
// every object with the desired state even without events.
func (p *Publisher) resyncEvery(ctx context.Context) {
	t := p.clock.NewTicker(p.resync)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			p.enqueueAll()
		}
	}
}

func (p *Publisher) processNext(ctx context.Context) bool {
	key, quit := p.q().Get()
	if quit {
		return false
	}
	defer p.q().Done(key)
	sctx, cancel := context.WithTimeout(ctx, syncTimeout)
	err := p.sync(sctx, key)
	cancel()
	if err == nil {
		p.q().Forget(key)
		return true
	}
	if ctx.Err() != nil {
		return true
	}
	p.log.Warn("reconcile failed; retrying with backoff", "key", key,
		"retries", p.q().NumRequeues(key), "error", err)
	p.q().AddRateLimited(key)
	return true
}

func (p *Publisher) sync(ctx context.Context, key string) error {
	st := p.desired.Load()
	if st == nil {
		return nil // nothing to publish yet; Update queues everything
	}
	switch {
	case key == keySecret:
		return p.syncSecret(ctx, st)
	case key == keyTrustBundles:
		return p.syncTrustBundles(ctx, st)
	case key == keyAllNamespaces:
		return p.syncAllNamespaces(ctx, st)
	case key == keyPQAnchors:
		return p.syncPQAnchors(ctx, st)
	case strings.HasPrefix(key, nsKeyPrefix):
		return p.syncNamespace(ctx, st, strings.TrimPrefix(key, nsKeyPrefix))
	}
	return fmt.Errorf("unknown workqueue key %q", key)
}

// enqueueOn returns a handler that queues key on any event.
func (p *Publisher) enqueueOn(key string) toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { p.q().Add(key) },
		UpdateFunc: func(any, any) { p.q().Add(key) },
		DeleteFunc: func(any) { p.q().Add(key) },
	}
}

func (p *Publisher) namespaceHandler() toolscache.ResourceEventHandler {
	enqueue := func(obj any) {
		ns, ok := obj.(*corev1.Namespace)
		if !ok {
			return
		}
		p.q().Add(nsKeyPrefix + ns.Name)
		if ns.Name == p.namespace {
			p.q().Add(keyPQAnchors) // istiod's namespace appeared
		}
	}
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
	}
}

func (p *Publisher) configMapHandler() toolscache.ResourceEventHandler {
	enqueue := func(obj any) {
		if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		cm, ok := obj.(*corev1.ConfigMap)
		switch {
		case !ok:
		case cm.Name == RootConfigMapName || cm.Name == p.crlName:
			p.q().Add(nsKeyPrefix + cm.Namespace)
		case cm.Name == PQAnchorsConfigMapName && cm.Namespace == p.namespace:
			p.q().Add(keyPQAnchors)
		}
	}
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: enqueue,
	}
}

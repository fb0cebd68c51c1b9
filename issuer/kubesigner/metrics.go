package kubesigner

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/util/workqueue"
)

// Outcome is how one reconcile ended; the values are meshca's, so they are
// safe metric labels.
type Outcome string

// Reconcile outcomes.
const (
	// OutcomeIssued: a certificate was written to the request.
	OutcomeIssued Outcome = "issued"
	// OutcomeDenied: the request was denied (a Denied condition written, or
	// it was Denied by someone else and is left alone).
	OutcomeDenied Outcome = "denied"
	// OutcomeFailed: a permanent failure was written to the request.
	OutcomeFailed Outcome = "failed"
	// OutcomePending: a transient problem; the request is retried.
	OutcomePending Outcome = "pending"
	// OutcomeIgnored: not meshca's (another signer or issuer), not yet
	// approved, or already finished.
	OutcomeIgnored Outcome = "ignored"
	// OutcomeError: the reconcile itself failed (an API write); requeued.
	OutcomeError Outcome = "error"
	// OutcomeChecked: a health check found an issuer ready (MeshIssuer,
	// MeshClusterIssuer); nothing was signed.
	OutcomeChecked Outcome = "checked"
)

// WaitReason is why the controllers this replica is meant to run are not
// running; the values are meshca's, so they are safe metric labels.
type WaitReason string

// Why the controllers wait (meshca_controllers_waiting{reason}).
const (
	// WaitAPIServer: the apiserver does not answer, so the manager cannot
	// be set up.
	WaitAPIServer WaitReason = "apiserver_unreachable"
	// WaitKindNotServed: a kind a controller watches is not served (a CRD
	// not installed, or removed).
	WaitKindNotServed WaitReason = "kind_not_served"
	// WaitCachesNotSynced: the informers did not sync within
	// CacheSyncTimeout (a watched kind not served, or not readable with
	// meshca's RBAC).
	WaitCachesNotSynced WaitReason = "caches_not_synced"
)

var waitReasons = []WaitReason{WaitAPIServer, WaitKindNotServed, WaitCachesNotSynced}

// Metrics are the controllers' meshca_controller_* metrics.
type Metrics struct {
	reconciles *prometheus.CounterVec
	duration   *prometheus.HistogramVec

	depth   *prometheus.GaugeVec
	adds    *prometheus.CounterVec
	latency *prometheus.HistogramVec
	work    *prometheus.HistogramVec
	retries *prometheus.CounterVec
	unfin   *prometheus.GaugeVec
	longest *prometheus.GaugeVec
	leader  prometheus.Gauge
	waiting *prometheus.GaugeVec
	// waitMu orders Waiting calls (a scrape is not ordered with them).
	waitMu sync.Mutex
}

// NewMetrics registers the metrics with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	buckets := []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	m := &Metrics{
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshca_controller_reconcile_total",
			Help: "Reconciles of meshca's Kubernetes controllers by outcome (issued, denied, failed, pending, ignored, error, checked).",
		}, []string{"controller", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "meshca_controller_reconcile_duration_seconds", Help: "Time of one reconcile.", Buckets: buckets,
		}, []string{"controller"}),
		depth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshca_controller_queue_depth", Help: "Requests waiting in a controller's work queue.",
		}, []string{"controller"}),
		adds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshca_controller_queue_adds_total", Help: "Requests added to a controller's work queue.",
		}, []string{"controller"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "meshca_controller_queue_wait_seconds", Help: "Time a request waited in the work queue before it was reconciled.", Buckets: buckets,
		}, []string{"controller"}),
		work: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "meshca_controller_queue_work_seconds", Help: "Time a request was being processed after leaving the queue.", Buckets: buckets,
		}, []string{"controller"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshca_controller_queue_retries_total", Help: "Requests requeued with rate-limited backoff.",
		}, []string{"controller"}),
		unfin: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshca_controller_queue_unfinished_work_seconds", Help: "Seconds of work in progress not yet finished (a stuck reconcile grows it).",
		}, []string{"controller"}),
		longest: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshca_controller_queue_longest_running_seconds", Help: "Seconds the longest running reconcile has been running.",
		}, []string{"controller"}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshca_controller_leader",
			Help: "1 while this replica runs the Kubernetes controllers (it holds the Lease of the singleton jobs, or runs without leader election) and their indexed caches have synced.",
		}),
		waiting: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshca_controllers_waiting",
			Help: "1, for its reason, while the Kubernetes controllers this replica is meant to run (it holds their Lease, or runs without leader election) are not running: " +
				"apiserver_unreachable, kind_not_served (a CRD not installed) or caches_not_synced (a watched kind not served or not readable with meshca's RBAC). " +
				"Cleared once a start has outlasted the informers' sync timeout.",
		}, []string{"reason"}),
	}
	for _, r := range waitReasons {
		m.waiting.WithLabelValues(string(r)).Set(0)
	}
	if reg != nil {
		reg.MustRegister(m.reconciles, m.duration, m.depth, m.adds, m.latency, m.work, m.retries, m.unfin, m.longest, m.leader, m.waiting)
	}
	return m
}

// Waiting sets meshca_controllers_waiting to 1 for r and 0 for the other
// reasons; r empty clears them all (the controllers run, or this replica
// is not meant to run them).
func (m *Metrics) Waiting(r WaitReason) {
	if m == nil {
		return
	}
	m.waitMu.Lock()
	defer m.waitMu.Unlock()
	// The new reason first: a scrape in between sees two reasons rather
	// than none, which would restart the alert's wait.
	if r != "" {
		m.waiting.WithLabelValues(string(r)).Set(1)
	}
	for _, o := range waitReasons {
		if o != r {
			m.waiting.WithLabelValues(string(o)).Set(0)
		}
	}
}

// Observe counts one reconcile of controller (a constant of meshca's).
func (m *Metrics) Observe(controller string, o Outcome, seconds float64) {
	if m == nil {
		return
	}
	m.reconciles.WithLabelValues(controller, string(o)).Inc()
	m.duration.WithLabelValues(controller).Observe(seconds)
}

// NewQueue is controller.Options.NewQueue for a controller whose work
// queue reports into m (queue name = controller name, meshca's constant).
func NewQueue[T comparable](m *Metrics) func(string, workqueue.TypedRateLimiter[T]) workqueue.TypedRateLimitingInterface[T] {
	return func(name string, rl workqueue.TypedRateLimiter[T]) workqueue.TypedRateLimitingInterface[T] {
		cfg := workqueue.TypedRateLimitingQueueConfig[T]{Name: name}
		if m != nil {
			cfg.MetricsProvider = queueMetrics{m}
		}
		return workqueue.NewTypedRateLimitingQueueWithConfig(rl, cfg)
	}
}

// queueMetrics is client-go's workqueue.MetricsProvider over m.
type queueMetrics struct{ m *Metrics }

func (q queueMetrics) NewDepthMetric(name string) workqueue.GaugeMetric {
	return q.m.depth.WithLabelValues(name)
}
func (q queueMetrics) NewAddsMetric(name string) workqueue.CounterMetric {
	return q.m.adds.WithLabelValues(name)
}
func (q queueMetrics) NewLatencyMetric(name string) workqueue.HistogramMetric {
	return q.m.latency.WithLabelValues(name)
}
func (q queueMetrics) NewWorkDurationMetric(name string) workqueue.HistogramMetric {
	return q.m.work.WithLabelValues(name)
}
func (q queueMetrics) NewUnfinishedWorkSecondsMetric(name string) workqueue.SettableGaugeMetric {
	return q.m.unfin.WithLabelValues(name)
}
func (q queueMetrics) NewLongestRunningProcessorSecondsMetric(name string) workqueue.SettableGaugeMetric {
	return q.m.longest.WithLabelValues(name)
}
func (q queueMetrics) NewRetriesMetric(name string) workqueue.CounterMetric {
	return q.m.retries.WithLabelValues(name)
}

// Reconciles reads meshca_controller_reconcile_total{controller, outcome}
// from g (0 when the series does not exist yet).
func Reconciles(g prometheus.Gatherer, controller string, o Outcome) (float64, error) {
	mfs, err := g.Gather()
	if err != nil {
		return 0, err
	}
	for _, mf := range mfs {
		if mf.GetName() != "meshca_controller_reconcile_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var c, out string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "controller":
					c = l.GetValue()
				case "outcome":
					out = l.GetValue()
				}
			}
			if c == controller && out == string(o) {
				return m.GetCounter().GetValue(), nil
			}
		}
	}
	return 0, nil
}

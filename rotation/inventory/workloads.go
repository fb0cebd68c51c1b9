package inventory

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"

	"github.com/meshca/meshca/ca/identity"
	"github.com/meshca/meshca/ca/store"
)

// Namespace label values that are not Kubernetes namespaces (a namespace
// is a DNS-1123 label, so neither can be one).
const (
	// NamespaceOther sums the namespaces beyond the top N.
	NamespaceOther = "_other"
	// NamespaceUnknown holds identities that are not Istio's
	// spiffe://<trust domain>/ns/<namespace>/sa/<service account>.
	NamespaceUnknown = "_unknown"
)

// NamespaceExpiry is the workload certificates of one namespace.
type NamespaceExpiry struct {
	Namespace string
	// Identities hold an unexpired certificate; Certificates are the
	// unexpired certificates.
	Identities, Certificates int
	// EarliestLatest is, over the namespace's identities, the earliest
	// notAfter of an identity's newest certificate: a workload that renews
	// keeps it ahead; one that failed to renew (or was deleted) lets it
	// come near.
	EarliestLatest time.Time
}

// Workloads is the inventory of workload certificates from meshca's
// issuance records (on a mesh whose proxies get their certificates over
// SDS, the only inventory there is), aggregated per namespace. It reads
// the store's expiry index (NotAfter and identity, no record decoded) at
// most once per Refresh and keeps the aggregate, whose size is bounded by
// MaxNamespaces.
type Workloads struct {
	Index store.ExpiryIndex
	// MaxNamespaces get their own entry, the soonest EarliestLatest
	// first; the others are summed in NamespaceOther.
	MaxNamespaces int
	Refresh       time.Duration
	Clock         clock.PassiveClock
	Log           *slog.Logger

	mu  sync.Mutex
	at  time.Time
	agg []NamespaceExpiry
	err error
}

// Namespaces returns the aggregate, read again when older than Refresh.
// Sorted by EarliestLatest, then name; NamespaceOther, if any, is last.
func (w *Workloads) Namespaces(ctx context.Context) ([]NamespaceExpiry, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.now()
	if !w.at.IsZero() && now.Sub(w.at) < w.Refresh && now.Sub(w.at) >= 0 {
		return w.agg, w.err
	}
	agg, err := w.read(ctx, now)
	w.at, w.err = now, err
	if err == nil {
		w.agg = agg
	}
	return w.agg, err
}

func (w *Workloads) now() time.Time {
	if w.Clock == nil {
		return time.Now()
	}
	return w.Clock.Now()
}

// read walks the unexpired part of the expiry index. In NotAfter order,
// the last entry of an identity is its newest certificate.
func (w *Workloads) read(ctx context.Context, now time.Time) ([]NamespaceExpiry, error) {
	type ident struct {
		latest time.Time
		certs  int
	}
	ids := map[string]*ident{}
	err := w.Index.ListExpiries(ctx, now, func(notAfter time.Time, id string) bool {
		if !notAfter.After(now) {
			return true
		}
		e := ids[id]
		if e == nil {
			e = &ident{}
			ids[id] = e
		}
		e.latest = notAfter
		e.certs++
		return true
	})
	if err != nil {
		return nil, err
	}
	byNS := map[string]*NamespaceExpiry{}
	for id, e := range ids {
		ns := NamespaceUnknown
		if k, err := identity.ParseKubernetes(id); err == nil {
			ns = k.Namespace
		}
		n := byNS[ns]
		if n == nil {
			n = &NamespaceExpiry{Namespace: ns, EarliestLatest: e.latest}
			byNS[ns] = n
		}
		n.Identities++
		n.Certificates += e.certs
		if e.latest.Before(n.EarliestLatest) {
			n.EarliestLatest = e.latest
		}
	}
	all := make([]NamespaceExpiry, 0, len(byNS))
	for _, n := range byNS {
		all = append(all, *n)
	}
	return topN(all, w.MaxNamespaces), nil
}

// topN keeps the n soonest entries and sums the rest in NamespaceOther.
func topN(all []NamespaceExpiry, n int) []NamespaceExpiry {
	slices.SortFunc(all, func(a, b NamespaceExpiry) int {
		return cmp.Or(a.EarliestLatest.Compare(b.EarliestLatest), cmp.Compare(a.Namespace, b.Namespace))
	})
	if n <= 0 || len(all) <= n {
		return all
	}
	other := NamespaceExpiry{Namespace: NamespaceOther, EarliestLatest: all[n].EarliestLatest}
	for _, e := range all[n:] {
		other.Identities += e.Identities
		other.Certificates += e.Certificates
	}
	return append(all[:n:n], other)
}

var (
	workloadIdentitiesDesc = prometheus.NewDesc("meshca_workload_identities",
		"Workload identities holding an unexpired certificate, by namespace.", []string{"namespace"}, nil)
	workloadCertsDesc = prometheus.NewDesc("meshca_workload_certificates",
		"Unexpired workload certificates in meshca's issuance records, by namespace of their identity.", []string{"namespace"}, nil)
	workloadLatestDesc = prometheus.NewDesc("meshca_workload_certificate_latest_not_after_min_timestamp_seconds",
		`For each workload identity the notAfter of its newest certificate; the earliest of these in the namespace, in seconds since the epoch (a workload whose newest certificate nears expiry failed to renew). Namespaces beyond inventory.workloads.maxNamespaces are summed in namespace="_other"; identities that are not spiffe://<td>/ns/<ns>/sa/<sa> in "_unknown".`,
		[]string{"namespace"}, nil)
	workloadUpDesc = prometheus.NewDesc("meshca_workload_inventory_up",
		"Whether the last read of the workload inventory from the store succeeded (1) or not (0).", nil, nil)
)

// Collector returns the prometheus.Collector of the workload inventory.
func (w *Workloads) Collector() prometheus.Collector { return workloadCollector{w} }

type workloadCollector struct{ w *Workloads }

func (c workloadCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- workloadIdentitiesDesc
	ch <- workloadCertsDesc
	ch <- workloadLatestDesc
	ch <- workloadUpDesc
}

func (c workloadCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	agg, err := c.w.Namespaces(ctx)
	up := 1.0
	if err != nil {
		up = 0
		if c.w.Log != nil {
			c.w.Log.Debug("workload inventory not read", "error", err)
		}
	}
	ch <- prometheus.MustNewConstMetric(workloadUpDesc, prometheus.GaugeValue, up)
	for _, n := range agg {
		ch <- prometheus.MustNewConstMetric(workloadIdentitiesDesc, prometheus.GaugeValue, float64(n.Identities), n.Namespace)
		ch <- prometheus.MustNewConstMetric(workloadCertsDesc, prometheus.GaugeValue, float64(n.Certificates), n.Namespace)
		ch <- prometheus.MustNewConstMetric(workloadLatestDesc, prometheus.GaugeValue, float64(n.EarliestLatest.Unix()), n.Namespace)
	}
}

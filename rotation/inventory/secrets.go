package inventory

import (
	"cmp"
	"context"
	"crypto/x509"
	"encoding/pem"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// leafKeys are the Secret keys whose first certificate is the workload's
// leaf: istio-agent's istio.io/key-and-cert Secrets (cert-chain.pem) and
// kubernetes.io/tls Secrets (tls.crt). No other key is ever parsed.
var leafKeys = []string{"cert-chain.pem", "tls.crt"}

// validityAnnotation carries, in the informer cache only, the leaf's
// notBefore and notAfter (Unix seconds) and whether one of meshca's
// intermediates issued it ("nb,na,m") or not ("nb,na,f"), as the
// transform found before dropping the Secret's data. It is never written
// to the apiserver.
const validityAnnotation = "inventory.meshca.io/leaf-validity"

// SecretSelector selects Secrets by type (a field selector) and labels.
type SecretSelector struct {
	Type          string
	LabelSelector string
}

// SecretExpiry is the scanned Secrets of one namespace.
type SecretExpiry struct {
	Namespace string
	// Secrets is how many Secrets hold a leaf that parses.
	Secrets int
	// NotBefore and NotAfter are the validity of the leaf that expires first.
	NotBefore, NotAfter time.Time
}

// SecretScan watches the Secrets that proxies (or cert-manager) write
// with workload certificates, for clusters that still have them. Each
// selector is one informer whose list and watch the apiserver filters by
// type and labels. A transform parses the leaf's validity as each Secret
// arrives and drops everything else (private keys, certificates, managed
// fields) before the object enters the cache, so meshca keeps no key in
// memory and a scrape reads two numbers per Secret. The metrics are per
// namespace (top N soonest, the rest summed in NamespaceOther): 50k
// Secrets are at most N+1 series.
//
// The scan trusts nothing it reads: any namespace can write any
// certificate into a selected Secret. Only a leaf whose signature verifies
// under one of meshca's intermediates (issuers) counts in the per-namespace
// aggregate that the WorkloadSecretExpiring rule reads; the others are
// only counted, cluster-wide (meshca_secret_scan_foreign).
type SecretScan struct {
	informers     []cache.SharedIndexInformer
	factories     []informers.SharedInformerFactory
	maxNamespaces int
	issuers       func() []*x509.Certificate
}

// NewSecretScan prepares one informer per selector, cluster-wide. issuers
// returns meshca's intermediates in force (the active generation and the
// retired ones whose leaves may still be valid); it is called as each
// Secret arrives and must be cheap. Start runs the informers.
func NewSecretScan(client kubernetes.Interface, selectors []SecretSelector, maxNamespaces int, issuers func() []*x509.Certificate) *SecretScan {
	s := &SecretScan{maxNamespaces: maxNamespaces, issuers: issuers}
	for _, sel := range selectors {
		f := informers.NewSharedInformerFactoryWithOptions(client, 0,
			informers.WithTweakListOptions(func(o *metav1.ListOptions) {
				o.FieldSelector = fields.OneTermEqualSelector("type", sel.Type).String()
				o.LabelSelector = sel.LabelSelector
			}),
			informers.WithTransform(s.stripSecret))
		s.informers = append(s.informers, f.Core().V1().Secrets().Informer())
		s.factories = append(s.factories, f)
	}
	return s
}

// stripSecret keeps a Secret's name, namespace and type, and the validity
// of its leaf certificate and whether meshca issued it; nothing else
// reaches the cache.
func (s *SecretScan) stripSecret(obj any) (any, error) {
	sec, ok := obj.(*corev1.Secret)
	if !ok {
		return obj, nil // a tombstone
	}
	out := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: sec.Namespace, Name: sec.Name, UID: sec.UID, ResourceVersion: sec.ResourceVersion},
		Type:       sec.Type,
	}
	// The transform may see an object it already stripped (client-go
	// requires a transform to be idempotent): keep what it parsed.
	if v, done := sec.Annotations[validityAnnotation]; done && len(sec.Data) == 0 {
		out.Annotations = map[string]string{validityAnnotation: v}
	} else if leaf := firstLeaf(sec.Data); leaf != nil {
		who := "f"
		if s.issuers != nil && issuedByOneOf(leaf, s.issuers()) {
			who = "m"
		}
		out.Annotations = map[string]string{validityAnnotation: strconv.FormatInt(leaf.NotBefore.Unix(), 10) + "," +
			strconv.FormatInt(leaf.NotAfter.Unix(), 10) + "," + who}
	}
	return out, nil
}

// firstLeaf parses the first certificate of the first leaf key present.
func firstLeaf(data map[string][]byte) *x509.Certificate {
	for _, k := range leafKeys {
		b, present := data[k]
		if !present {
			continue
		}
		for rest := b; ; {
			var blk *pem.Block
			blk, rest = pem.Decode(rest)
			if blk == nil {
				break
			}
			if blk.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				break
			}
			return c
		}
	}
	return nil
}

// Start runs the informers until ctx ends.
func (s *SecretScan) Start(ctx context.Context) {
	for _, f := range s.factories {
		f.Start(ctx.Done())
	}
}

// WaitForSync waits until the caches are filled or ctx ends.
func (s *SecretScan) WaitForSync(ctx context.Context) bool {
	syncs := make([]cache.InformerSynced, len(s.informers))
	for i, inf := range s.informers {
		syncs[i] = inf.HasSynced
	}
	return cache.WaitForCacheSync(ctx.Done(), syncs...)
}

// Synced reports whether every informer has synced.
func (s *SecretScan) Synced() bool {
	for _, inf := range s.informers {
		if !inf.HasSynced() {
			return false
		}
	}
	return true
}

// Cached returns the cached objects (what meshca holds of the Secrets).
func (s *SecretScan) Cached() []*corev1.Secret {
	var out []*corev1.Secret
	seen := map[string]bool{}
	for _, inf := range s.informers {
		for _, o := range inf.GetStore().List() {
			sec, ok := o.(*corev1.Secret)
			if !ok || seen[string(sec.UID)] {
				continue // two selectors may select one Secret
			}
			seen[string(sec.UID)] = true
			out = append(out, sec)
		}
	}
	return out
}

// aggregate reads the cache: per namespace, the Secrets whose leaf meshca
// issued and the leaf that expires first; the soonest maxNamespaces, the
// rest summed in NamespaceOther (last). It also returns how many Secrets
// hold no leaf that parses and how many a leaf meshca did not issue.
func (s *SecretScan) aggregate() (agg []SecretExpiry, unparsable, foreign int) {
	byNS := map[string]*SecretExpiry{}
	for _, sec := range s.Cached() {
		nb, na, ours, ok := cachedValidity(sec)
		if !ok {
			unparsable++
			continue
		}
		if !ours {
			foreign++
			continue
		}
		e := byNS[sec.Namespace]
		if e == nil {
			e = &SecretExpiry{Namespace: sec.Namespace, NotBefore: nb, NotAfter: na}
			byNS[sec.Namespace] = e
		}
		e.Secrets++
		if na.Before(e.NotAfter) {
			e.NotBefore, e.NotAfter = nb, na
		}
	}
	all := make([]SecretExpiry, 0, len(byNS))
	for _, e := range byNS {
		all = append(all, *e)
	}
	slices.SortFunc(all, func(a, b SecretExpiry) int {
		return cmp.Or(a.NotAfter.Compare(b.NotAfter), cmp.Compare(a.Namespace, b.Namespace))
	})
	if n := s.maxNamespaces; n > 0 && len(all) > n {
		other := SecretExpiry{Namespace: NamespaceOther, NotBefore: all[n].NotBefore, NotAfter: all[n].NotAfter}
		for _, e := range all[n:] {
			other.Secrets += e.Secrets
		}
		all = append(all[:n:n], other)
	}
	return all, unparsable, foreign
}

// Namespaces is the per-namespace aggregate (see SecretScan).
func (s *SecretScan) Namespaces() []SecretExpiry {
	agg, _, _ := s.aggregate()
	return agg
}

func cachedValidity(sec *corev1.Secret) (nb, na time.Time, ours, ok bool) {
	v, found := sec.Annotations[validityAnnotation]
	if !found {
		return time.Time{}, time.Time{}, false, false
	}
	f := strings.Split(v, ",")
	if len(f) != 3 {
		return time.Time{}, time.Time{}, false, false
	}
	x, err1 := strconv.ParseInt(f[0], 10, 64)
	y, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil {
		return time.Time{}, time.Time{}, false, false
	}
	return time.Unix(x, 0).UTC(), time.Unix(y, 0).UTC(), f[2] == "m", true
}

var (
	scanNotAfterDesc = prometheus.NewDesc("meshca_secret_scan_not_after_min_timestamp_seconds",
		`The earliest notAfter of the leaf certificates meshca issued in the scanned Secrets (inventory.secretScan), by namespace, in seconds since the epoch. Namespaces beyond inventory.secretScan.maxNamespaces (the latest to expire) are summed in namespace="_other".`,
		[]string{"namespace"}, nil)
	scanSecretsDesc = prometheus.NewDesc("meshca_secret_scan_secrets",
		"Scanned Secrets (inventory.secretScan.selectors) whose leaf certificate meshca issued, by namespace.", []string{"namespace"}, nil)
	scanForeignDesc = prometheus.NewDesc("meshca_secret_scan_foreign",
		"Scanned Secrets whose leaf certificate parses but was not issued by one of meshca's intermediates (its signature does not verify under them): counted, never alerted on.", nil, nil)
	scanUnparsableDesc = prometheus.NewDesc("meshca_secret_scan_unparsable",
		"Scanned Secrets with no certificate that parses.", nil, nil)
)

// Collector returns the prometheus.Collector of the scan; nothing is
// reported until the informers have synced.
func (s *SecretScan) Collector() prometheus.Collector { return scanCollector{s} }

type scanCollector struct{ s *SecretScan }

func (c scanCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- scanNotAfterDesc
	ch <- scanSecretsDesc
	ch <- scanUnparsableDesc
	ch <- scanForeignDesc
}

func (c scanCollector) Collect(ch chan<- prometheus.Metric) {
	if !c.s.Synced() {
		return
	}
	agg, unparsable, foreign := c.s.aggregate()
	ch <- prometheus.MustNewConstMetric(scanUnparsableDesc, prometheus.GaugeValue, float64(unparsable))
	ch <- prometheus.MustNewConstMetric(scanForeignDesc, prometheus.GaugeValue, float64(foreign))
	for _, e := range agg {
		ch <- prometheus.MustNewConstMetric(scanNotAfterDesc, prometheus.GaugeValue, float64(e.NotAfter.Unix()), e.Namespace)
		ch <- prometheus.MustNewConstMetric(scanSecretsDesc, prometheus.GaugeValue, float64(e.Secrets), e.Namespace)
	}
}

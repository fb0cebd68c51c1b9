// Package inventory owns meshca's inventory of CA certificates and its
// Prometheus metrics: the notBefore and notAfter of every root and
// intermediate meshca publishes, of the certificates in Istio's cacerts
// Secret (whoever wrote it) and of meshca's ClusterTrustBundles in the cluster.
//
// The metrics are computed at scrape time by a prometheus.Collector, as
// cert-manager's collectors do, and are absolute Unix timestamps (RFC 5280
// section 4.1.2.5, the certificate's validity), never TTLs that go stale
// between scrapes. A scrape reads only memory: meshca's material, the
// store's small generation list and client-go informer caches; it never
// calls the apiserver.
//
// Label values come only from meshca's own names, from the names of the
// cluster objects read (the one cacerts Secret, meshca's own
// ClusterTrustBundles: selected on the apiserver by signer and label) and
// from their certificates' serial and issuer, so the number of series is
// bounded by meshca's CA certificates and the cacerts Secret (at most
// maxCertsPerObject each). The issuer adds no series (a certificate has
// one issuer); being free text chosen by whoever made the certificate, it
// is reported as its RFC 4514 string (bytes that are not UTF-8 become
// U+FFFD) cut to maxIssuerLabel characters.
// Nothing here knows about workloads or pods. The package must not change
// any of the material it reports.
package inventory

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Values of the kind label.
const (
	KindRoot               = "root"               // a root meshca publishes
	KindIntermediate       = "intermediate"       // a generation of meshca's intermediate
	KindCACerts            = "cacerts"            // a certificate in Istio's cacerts Secret
	KindClusterTrustBundle = "clustertrustbundle" // a certificate in a ClusterTrustBundle
)

// Certificate is one entry of the inventory.
type Certificate struct {
	// Kind is one of the Kind constants.
	Kind string
	// Namespace and Name name the object that holds the certificate: a
	// Secret, a ClusterTrustBundle (no namespace), or meshca's own
	// material ("root", "gen-<id>").
	Namespace, Name string
	Cert            *x509.Certificate
}

// Source lists certificates at scrape time. It must be cheap: it reads
// memory or a local cache, never a remote API.
type Source interface {
	// Name is the value of the source label of meshca_inventory_source_up.
	Name() string
	// Certificates returns the certificates known now. An error marks the
	// source down for this scrape; the certificates returned with it are
	// still reported.
	Certificates(ctx context.Context) ([]Certificate, error)
}

var (
	certLabels   = []string{"kind", "namespace", "name", "serial", "issuer"}
	notAfterDesc = prometheus.NewDesc("meshca_certificate_not_after_timestamp_seconds",
		"The notAfter of a CA certificate meshca publishes or finds in the cluster, in seconds since the epoch, by kind (root, intermediate, cacerts, clustertrustbundle) and holding object.",
		certLabels, nil)
	notBeforeDesc = prometheus.NewDesc("meshca_certificate_not_before_timestamp_seconds",
		"The notBefore of a CA certificate meshca publishes or finds in the cluster, in seconds since the epoch, by kind and holding object.",
		certLabels, nil)
	upDesc = prometheus.NewDesc("meshca_inventory_source_up",
		"Whether the inventory source (ca, cacerts, clustertrustbundles) answered the last scrape completely (1) or not (0: not synced, unreadable, or a certificate that does not parse).",
		[]string{"source"}, nil)
)

// Collector is the prometheus.Collector of the inventory.
type Collector struct {
	sources []Source
	log     *slog.Logger
	timeout time.Duration
}

// Option configures a Collector.
type Option func(*Collector)

// WithLogger logs source errors (at debug level: the metric says it).
func WithLogger(l *slog.Logger) Option { return func(c *Collector) { c.log = l } }

// WithTimeout bounds how long one scrape waits for a source (default 5 s).
func WithTimeout(d time.Duration) Option { return func(c *Collector) { c.timeout = d } }

// NewCollector returns a collector over sources.
func NewCollector(sources []Source, opts ...Option) *Collector {
	c := &Collector{sources: sources, log: slog.Default(), timeout: 5 * time.Second}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- notAfterDesc
	ch <- notBeforeDesc
	ch <- upDesc
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	seen := map[[5]string]bool{}
	for _, s := range c.sources {
		certs, err := s.Certificates(ctx)
		up := 1.0
		if err != nil {
			up = 0
			c.log.Debug("inventory source incomplete", "source", s.Name(), "error", err)
		}
		ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, up, s.Name())
		for _, e := range certs {
			l := labelValues(e)
			// The same certificate twice in one object (ca-cert.pem is
			// also the head of cert-chain.pem) is one series.
			if seen[l] {
				continue
			}
			seen[l] = true
			ch <- prometheus.MustNewConstMetric(notAfterDesc, prometheus.GaugeValue, float64(e.Cert.NotAfter.Unix()), l[:]...)
			ch <- prometheus.MustNewConstMetric(notBeforeDesc, prometheus.GaugeValue, float64(e.Cert.NotBefore.Unix()), l[:]...)
		}
	}
}

// maxIssuerLabel bounds the issuer label, in characters.
const maxIssuerLabel = 256

// labelValues are e's label values: the serial in lower-case hex (as
// meshca's records spell it) and the issuer's distinguished name (RFC
// 4514), cut to maxIssuerLabel characters.
func labelValues(e Certificate) [5]string {
	issuer := []rune(strings.ToValidUTF8(e.Cert.Issuer.String(), "\uFFFD"))
	if len(issuer) > maxIssuerLabel {
		issuer = append(issuer[:maxIssuerLabel-1], '…')
	}
	return [5]string{e.Kind, e.Namespace, e.Name, hex.EncodeToString(e.Cert.SerialNumber.Bytes()), string(issuer)}
}

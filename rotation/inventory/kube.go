package inventory

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	certificatesv1beta1 "k8s.io/api/certificates/v1beta1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"

	"github.com/meshca/meshca/trustbundle/bundleversion"
)

// caCertsKeys are the keys of Istio's cacerts Secret that hold
// certificates (Istio docs, "Plug in CA Certificates"), and those of its
// kubernetes.io/tls variant; ca-key.pem is never read.
var caCertsKeys = []string{"ca-cert.pem", "cert-chain.pem", "root-cert.pem", "tls.crt", "ca.crt"}

// Kube holds the informers of the cluster sources: one Secret (Istio's
// cacerts) and meshca's own ClusterTrustBundles. Scrapes read their caches.
type Kube struct {
	client               kubernetes.Interface
	secretNS, secretName string
	secrets              cache.SharedIndexInformer
	factory              informers.SharedInformerFactory
	selectors            []BundleSelector
	clk                  clock.Clock
	log                  *slog.Logger

	mu sync.Mutex
	// discovered is set once the ClusterTrustBundle version is known;
	// bundles and listBundles are set with it (none when the cluster
	// serves no ClusterTrustBundle API).
	discovered  bool
	bundles     []cache.SharedIndexInformer
	listBundles []func() ([]Certificate, error)
}

// BundleSelector selects the ClusterTrustBundles of one signer on the
// apiserver: by spec.signerName (a field selector the ClusterTrustBundle
// API serves, KEP-3257) and by label. Only a client allowed to "attest"
// for a signer may write a bundle linked to it, so a bundle someone else
// publishes (trust-manager's public roots, another CA's) never matches
// and never enters the cache.
type BundleSelector struct {
	SignerName    string
	LabelSelector string
}

// NewKube prepares informers for the Secret namespace/name (watched alone,
// through a field selector on its name, so that RBAC may grant only that
// name) and, when bundles is not empty, one per selector for the
// ClusterTrustBundles of the version the cluster serves
// (certificates.k8s.io/v1, else v1beta1, else none). NewKube does not call
// the apiserver: Start runs the informers and discovers the version in the
// background, retrying while the apiserver cannot be reached, so that
// meshca starts (and signs) during an apiserver outage.
func NewKube(client kubernetes.Interface, namespace, name string, bundles []BundleSelector, opts ...KubeOption) (*Kube, error) {
	for _, sel := range bundles {
		if _, err := labels.Parse(sel.LabelSelector); err != nil {
			return nil, fmt.Errorf("ClusterTrustBundle label selector %q: %w", sel.LabelSelector, err)
		}
	}
	k := &Kube{client: client, secretNS: namespace, secretName: name, selectors: bundles, clk: clock.RealClock{}, log: slog.Default()}
	for _, o := range opts {
		o(k)
	}
	k.factory = informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
		}))
	k.secrets = k.factory.Core().V1().Secrets().Informer()
	return k, nil
}

// KubeOption configures a Kube.
type KubeOption func(*Kube)

// WithKubeClock sets the clock of the discovery retries.
func WithKubeClock(c clock.Clock) KubeOption { return func(k *Kube) { k.clk = c } }

// WithKubeLogger sets the logger of the discovery retries.
func WithKubeLogger(l *slog.Logger) KubeOption { return func(k *Kube) { k.log = l } }

// bundleInformers builds the informers of the selected ClusterTrustBundles
// of version ("": none, the cluster serves no ClusterTrustBundle API).
func (k *Kube) bundleInformers(version string) ([]informers.SharedInformerFactory, []cache.SharedIndexInformer, []func() ([]Certificate, error)) {
	var factories []informers.SharedInformerFactory
	var infs []cache.SharedIndexInformer
	var lists []func() ([]Certificate, error)
	for _, sel := range k.selectors {
		bf := informers.NewSharedInformerFactoryWithOptions(k.client, 0,
			informers.WithTweakListOptions(func(o *metav1.ListOptions) {
				o.FieldSelector = fields.OneTermEqualSelector("spec.signerName", sel.SignerName).String()
				o.LabelSelector = sel.LabelSelector
			}))
		switch version {
		case "v1":
			inf := bf.Certificates().V1().ClusterTrustBundles()
			infs = append(infs, inf.Informer())
			lists = append(lists, func() ([]Certificate, error) {
				objs, err := inf.Lister().List(labels.Everything())
				if err != nil {
					return nil, err
				}
				var out []Certificate
				var errs []error
				for _, o := range sortedV1(objs) {
					certs, err := parsePEMCerts(o.Spec.TrustBundle, KindClusterTrustBundle, "", o.Name)
					out, errs = append(out, certs...), append(errs, err)
				}
				return out, errors.Join(errs...)
			})
		case "v1beta1":
			inf := bf.Certificates().V1beta1().ClusterTrustBundles()
			infs = append(infs, inf.Informer())
			lists = append(lists, func() ([]Certificate, error) {
				objs, err := inf.Lister().List(labels.Everything())
				if err != nil {
					return nil, err
				}
				var out []Certificate
				var errs []error
				for _, o := range sortedV1beta1(objs) {
					certs, err := parsePEMCerts(o.Spec.TrustBundle, KindClusterTrustBundle, "", o.Name)
					out, errs = append(out, certs...), append(errs, err)
				}
				return out, errors.Join(errs...)
			})
		default:
			return nil, nil, nil
		}
		factories = append(factories, bf)
	}
	return factories, infs, lists
}

// Start runs the informers until ctx ends. The ClusterTrustBundle
// informers start once their version is discovered, retried in the
// background while the apiserver cannot be reached (or, just restarted,
// refuses discovery).
func (k *Kube) Start(ctx context.Context) {
	k.factory.Start(ctx.Done())
	if len(k.selectors) == 0 {
		k.mu.Lock()
		k.discovered = true
		k.mu.Unlock()
		return
	}
	go func() {
		v, err := bundleversion.Wait(ctx, k.client.Discovery(), k.clk, k.log)
		if err != nil {
			return // ctx ended
		}
		if v == "" {
			k.log.Warn("the apiserver serves no ClusterTrustBundle API; the certificate inventory reports no ClusterTrustBundles")
		}
		factories, infs, lists := k.bundleInformers(v)
		k.mu.Lock()
		k.discovered, k.bundles, k.listBundles = true, infs, lists
		k.mu.Unlock()
		for _, f := range factories {
			f.Start(ctx.Done())
		}
	}()
}

// bundleState returns what discovery found so far.
func (k *Kube) bundleState() (bool, []cache.SharedIndexInformer, []func() ([]Certificate, error)) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.discovered, k.bundles, k.listBundles
}

// WaitForSync waits until the caches are filled (the ClusterTrustBundle
// version discovered first) or ctx ends.
func (k *Kube) WaitForSync(ctx context.Context) bool {
	if !cache.WaitForCacheSync(ctx.Done(), k.secrets.HasSynced) {
		return false
	}
	for {
		discovered, bundles, _ := k.bundleState()
		if discovered {
			syncs := make([]cache.InformerSynced, len(bundles))
			for i, b := range bundles {
				syncs[i] = b.HasSynced
			}
			return cache.WaitForCacheSync(ctx.Done(), syncs...)
		}
		t := k.clk.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C():
		}
	}
}

// CACerts is the source of the cacerts Secret.
func (k *Kube) CACerts() Source { return caCertsSource{k} }

// ClusterTrustBundles is the source of meshca's ClusterTrustBundles (nil
// when there is no selector). Until the version is discovered it reports
// an error; when the cluster serves no ClusterTrustBundle API, nothing.
func (k *Kube) ClusterTrustBundles() Source {
	if len(k.selectors) == 0 {
		return nil
	}
	return bundleSource{k}
}

type caCertsSource struct{ k *Kube }

func (s caCertsSource) Name() string { return "cacerts" }

func (s caCertsSource) Certificates(context.Context) ([]Certificate, error) {
	k := s.k
	if !k.secrets.HasSynced() {
		return nil, errors.New("the Secret informer has not synced")
	}
	obj, ok, err := k.secrets.GetStore().GetByKey(k.secretNS + "/" + k.secretName)
	if err != nil || !ok {
		return nil, err // no Secret: nothing to report, and nothing wrong
	}
	sec := obj.(*corev1.Secret)
	var out []Certificate
	var errs []error
	for _, key := range caCertsKeys {
		if b, ok := sec.Data[key]; ok {
			certs, err := parsePEMCerts(string(b), KindCACerts, sec.Namespace, sec.Name)
			if err != nil {
				err = fmt.Errorf("%s: %w", key, err)
			}
			out, errs = append(out, certs...), append(errs, err)
		}
	}
	return out, errors.Join(errs...)
}

type bundleSource struct{ k *Kube }

func (s bundleSource) Name() string { return "clustertrustbundles" }

func (s bundleSource) Certificates(context.Context) ([]Certificate, error) {
	discovered, bundles, lists := s.k.bundleState()
	if !discovered {
		return nil, errors.New("the ClusterTrustBundle API version has not been discovered yet")
	}
	for _, b := range bundles {
		if !b.HasSynced() {
			return nil, errors.New("the ClusterTrustBundle informers have not synced")
		}
	}
	var out []Certificate
	var errs []error
	for _, list := range lists {
		certs, err := list()
		out, errs = append(out, certs...), append(errs, err)
	}
	return out, errors.Join(errs...)
}

// maxCertsPerObject bounds the series one holding object can cause (a
// chain and a root or two, or the roots of a root rotation, are far fewer).
const maxCertsPerObject = 32

// parsePEMCerts parses the CERTIFICATE blocks of b, at most
// maxCertsPerObject of them. Other blocks are skipped; a certificate that
// does not parse, or one beyond the cap, is an error, and the others are
// still returned.
func parsePEMCerts(b, kind, namespace, name string) ([]Certificate, error) {
	rest := []byte(b)
	var out []Certificate
	var errs []error
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		if len(out) == maxCertsPerObject {
			errs = append(errs, fmt.Errorf("%s %s/%s: more than %d certificates; the rest are not reported", kind, namespace, name, maxCertsPerObject))
			break
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %s/%s: %w", kind, namespace, name, err))
			continue
		}
		out = append(out, Certificate{Kind: kind, Namespace: namespace, Name: name, Cert: c})
	}
	return out, errors.Join(errs...)
}

func sortedV1(objs []*certificatesv1.ClusterTrustBundle) []*certificatesv1.ClusterTrustBundle {
	sort.Slice(objs, func(i, j int) bool { return objs[i].Name < objs[j].Name })
	return objs
}

func sortedV1beta1(objs []*certificatesv1beta1.ClusterTrustBundle) []*certificatesv1beta1.ClusterTrustBundle {
	sort.Slice(objs, func(i, j int) bool { return objs[i].Name < objs[j].Name })
	return objs
}

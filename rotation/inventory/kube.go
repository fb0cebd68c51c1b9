package inventory

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"sort"

	certificatesv1 "k8s.io/api/certificates/v1"
	certificatesv1beta1 "k8s.io/api/certificates/v1beta1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// caCertsKeys are the keys of Istio's cacerts Secret that hold
// certificates (Istio docs, "Plug in CA Certificates"), and those of its
// kubernetes.io/tls variant; ca-key.pem is never read.
var caCertsKeys = []string{"ca-cert.pem", "cert-chain.pem", "root-cert.pem", "tls.crt", "ca.crt"}

// Kube holds the informers of the cluster sources: one Secret (Istio's
// cacerts) and meshca's own ClusterTrustBundles. Scrapes read their caches.
type Kube struct {
	secretNS, secretName string
	secrets              cache.SharedIndexInformer
	bundles              []cache.SharedIndexInformer
	listBundles          []func() ([]Certificate, error)
	factories            []informers.SharedInformerFactory
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
// (certificates.k8s.io/v1, else v1beta1, else none). Start runs them.
func NewKube(client kubernetes.Interface, namespace, name string, bundles []BundleSelector) (*Kube, error) {
	k := &Kube{secretNS: namespace, secretName: name}
	sf := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
		}))
	k.secrets = sf.Core().V1().Secrets().Informer()
	k.factories = append(k.factories, sf)
	if len(bundles) == 0 {
		return k, nil
	}
	version, err := bundleVersion(client)
	if err != nil {
		return nil, err
	}
	for _, sel := range bundles {
		if _, err := labels.Parse(sel.LabelSelector); err != nil {
			return nil, fmt.Errorf("ClusterTrustBundle label selector %q: %w", sel.LabelSelector, err)
		}
		bf := informers.NewSharedInformerFactoryWithOptions(client, 0,
			informers.WithTweakListOptions(func(o *metav1.ListOptions) {
				o.FieldSelector = fields.OneTermEqualSelector("spec.signerName", sel.SignerName).String()
				o.LabelSelector = sel.LabelSelector
			}))
		switch version {
		case "v1":
			inf := bf.Certificates().V1().ClusterTrustBundles()
			k.bundles = append(k.bundles, inf.Informer())
			k.listBundles = append(k.listBundles, func() ([]Certificate, error) {
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
			k.bundles = append(k.bundles, inf.Informer())
			k.listBundles = append(k.listBundles, func() ([]Certificate, error) {
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
			return k, nil // the cluster serves no ClusterTrustBundles
		}
		k.factories = append(k.factories, bf)
	}
	return k, nil
}

// bundleVersion is the ClusterTrustBundle version the cluster serves, or
// "" when it serves none.
func bundleVersion(client kubernetes.Interface) (string, error) {
	for _, v := range []string{"v1", "v1beta1"} {
		rl, err := client.Discovery().ServerResourcesForGroupVersion("certificates.k8s.io/" + v)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("discover ClusterTrustBundles: %w", err)
		}
		for _, r := range rl.APIResources {
			if r.Name == "clustertrustbundles" {
				return v, nil
			}
		}
	}
	return "", nil
}

// Start runs the informers until ctx ends.
func (k *Kube) Start(ctx context.Context) {
	for _, f := range k.factories {
		f.Start(ctx.Done())
	}
}

// WaitForSync waits until the caches are filled or ctx ends.
func (k *Kube) WaitForSync(ctx context.Context) bool {
	syncs := []cache.InformerSynced{k.secrets.HasSynced}
	for _, b := range k.bundles {
		syncs = append(syncs, b.HasSynced)
	}
	return cache.WaitForCacheSync(ctx.Done(), syncs...)
}

// CACerts is the source of the cacerts Secret.
func (k *Kube) CACerts() Source { return caCertsSource{k} }

// ClusterTrustBundles is the source of meshca's ClusterTrustBundles (nil
// when there is no selector or the cluster serves none).
func (k *Kube) ClusterTrustBundles() Source {
	if len(k.bundles) == 0 {
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
	for _, b := range s.k.bundles {
		if !b.HasSynced() {
			return nil, errors.New("the ClusterTrustBundle informers have not synced")
		}
	}
	var out []Certificate
	var errs []error
	for _, list := range s.k.listBundles {
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

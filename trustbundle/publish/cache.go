package publish

import (
	certificatesv1 "k8s.io/api/certificates/v1"
	certificatesv1beta1 "k8s.io/api/certificates/v1beta1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	ctrlcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Cache is what the Publisher needs of a controller-runtime cache shared
// with other controllers, restricted exactly as its own informers were:
// ConfigMaps and ClusterTrustBundles (of the discovered version) that
// carry meshca's managed-by label, and the one Secret cacerts in istiod's
// namespace (a field selector on its name, which RBAC's resourceNames
// authorizes). Namespaces are watched whole and need no entry. The
// Publisher never modifies what it reads, so reads of the ConfigMaps (a
// CRL may be 1 MiB, in every namespace) and bundles skip the deep copy.
// Call Discover first.
//
// Anyone who may create ConfigMaps in a namespace can set that label, or
// add to meshca's own ConfigMaps there: the cache keeps of each only what
// the Publisher reads (trimConfigMap). A tenant's ConfigMaps then cost
// meshca their count, and at most the key of the two meshca-named ones in
// each namespace (up to 1 MiB each, as a published CRL may be).
func (p *Publisher) Cache() map[client.Object]ctrlcache.ByObject {
	managed := labels.SelectorFromSet(labels.Set{LabelManagedBy: FieldManager})
	noCopy := true
	out := map[client.Object]ctrlcache.ByObject{
		&corev1.ConfigMap{}: {Label: managed, UnsafeDisableDeepCopy: &noCopy, Transform: p.trimConfigMap},
		&corev1.Secret{}: {Namespaces: map[string]ctrlcache.Config{
			p.namespace: {FieldSelector: fields.OneTermEqualSelector("metadata.name", SecretName)},
		}},
	}
	switch {
	case !p.ctbOn:
	case p.ctbVersion == "v1":
		out[&certificatesv1.ClusterTrustBundle{}] = ctrlcache.ByObject{Label: managed, UnsafeDisableDeepCopy: &noCopy}
	case p.ctbVersion == "v1beta1":
		out[&certificatesv1beta1.ClusterTrustBundle{}] = ctrlcache.ByObject{Label: managed, UnsafeDisableDeepCopy: &noCopy}
	}
	return out
}

// trimConfigMap keeps of a cached ConfigMap what the Publisher reads: of
// one it writes (istio-ca-root-cert, the CRL ConfigMap, the PQ anchors in
// istiod's namespace) its key and meshca's labels, of any other only what
// identifies it. Tenants can add keys, annotations and labels to both.
func (p *Publisher) trimConfigMap(o any) (any, error) {
	cm, ok := o.(*corev1.ConfigMap)
	if !ok {
		return o, nil
	}
	out := &corev1.ConfigMap{TypeMeta: cm.TypeMeta, ObjectMeta: metav1.ObjectMeta{
		Name: cm.Name, Namespace: cm.Namespace, UID: cm.UID, ResourceVersion: cm.ResourceVersion,
	}}
	key := p.configMapKey(cm.Namespace, cm.Name)
	if key == "" {
		return out, nil
	}
	if v, ok := cm.Data[key]; ok {
		out.Data = map[string]string{key: v}
	}
	for _, k := range []string{LabelManagedBy, LabelIstioConfig} {
		if v, ok := cm.Labels[k]; ok {
			if out.Labels == nil {
				out.Labels = map[string]string{}
			}
			out.Labels[k] = v
		}
	}
	return out, nil
}

// configMapKey is the data key of ConfigMap ns/name if the Publisher
// writes it, else "".
func (p *Publisher) configMapKey(ns, name string) string {
	switch {
	case name == RootConfigMapName:
		return rootConfigMapKey
	case name == p.crlName:
		return crlConfigMapKey
	case name == PQAnchorsConfigMapName && ns == p.namespace:
		return PQAnchorsConfigMapKey
	}
	return ""
}

package publish

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// configMapLabels are the labels of both namespace ConfigMaps.
var configMapLabels = map[string]string{LabelManagedBy: FieldManager, LabelIstioConfig: "true"}

// syncAllNamespaces reports a CRL that cannot be published because it does
// not fit a ConfigMap, then queues every namespace. The report comes first,
// so that a namespace this queues takes a new CRL only after CRLTooLarge
// and meshca_trustbundle_refused say it fits. (A namespace queued
// meanwhile by an event of its own reads the same desired state and may
// take it a moment earlier; the report follows within the same sync.)
func (p *Publisher) syncAllNamespaces(ctx context.Context, st *state) error {
	var nss corev1.NamespaceList
	if err := p.cache.List(ctx, &nss, client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	err := p.reportCRLSize(ctx, st)
	for _, ns := range nss.Items {
		p.q().Add(nsKeyPrefix + ns.Name)
	}
	return err
}

// reportCRLSize raises CRLTooLarge for a CRL over the ConfigMap limit and
// clears it otherwise.
func (p *Publisher) reportCRLSize(ctx context.Context, st *state) error {
	object := "ConfigMap */" + p.crlName
	if !crlTooLarge(st) {
		p.problems.clear(ctx, ReasonCRLTooLarge, object)
		return nil
	}
	sum := sha256.Sum256(st.crl)
	msg := fmt.Sprintf("the CRL is %d bytes, over the %d-byte ConfigMap limit; meshca does not publish it in the %s ConfigMaps "+
		"(they keep the previous CRL). Shorten the CRL: instead of revoking many leaves, rotate the intermediate and revoke its whole generation (one entry on the root's CRL); entries of expired certificates age out after one CRL period.",
		len(st.crl), MaxObjectBytes, p.crlName)
	p.log.Error("CRL too large for a ConfigMap; not publishing it", "bytes", len(st.crl), "limit", MaxObjectBytes)
	return p.problems.raise(ctx, problem{rule: ReasonCRLTooLarge, object: object, fingerprint: hex.EncodeToString(sum[:]),
		ref: configMapRef(p.namespace, p.crlName), message: msg})
}

// crlTooLarge: Kubernetes limits the total size of a ConfigMap's data, key
// names included, to 1 MiB.
func crlTooLarge(st *state) bool { return len(crlConfigMapKey)+len(st.crl) > MaxObjectBytes }

// selects reports whether ns gets the ConfigMaps: it is live, not excluded
// and matches the namespace selector.
func (p *Publisher) selects(ns *corev1.Namespace) bool {
	return ns.DeletionTimestamp == nil && ns.Status.Phase != corev1.NamespaceTerminating &&
		!p.excluded[ns.Name] && p.selector.Matches(labels.Set(ns.Labels))
}

// syncNamespace makes the root ConfigMap, and the CRL ConfigMap once a CRL
// exists, hold st in namespace name. It never deletes either.
func (p *Publisher) syncNamespace(ctx context.Context, st *state, name string) error {
	var ns corev1.Namespace
	err := p.cache.Get(ctx, client.ObjectKey{Name: name}, &ns)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if !p.selects(&ns) {
		return nil
	}
	errRoot := p.syncConfigMap(ctx, name, RootConfigMapName, rootConfigMapKey, objectRootCM, configMapLabels,
		func(old string) string { return string(publishedRoots([]byte(old), st.roots)) })
	var errCRL error
	if len(st.crl) > 0 && !crlTooLarge(st) {
		errCRL = p.syncConfigMap(ctx, name, p.crlName, crlConfigMapKey, objectCRLCM, configMapLabels,
			func(string) string { return string(st.crl) })
	}
	return errors.Join(errRoot, errCRL)
}

// syncConfigMap applies ConfigMap ns/name with key set to content(current
// value) and labels lbl unless the cached copy already holds them.
func (p *Publisher) syncConfigMap(ctx context.Context, ns, name, key, object string, lbl map[string]string, content func(old string) string) error {
	cur, err := p.cachedConfigMap(ctx, ns, name)
	if err != nil {
		return err
	}
	var old string
	if cur != nil {
		old = cur.Data[key]
	}
	want := content(old)
	if cur != nil && old == want && hasLabels(cur.Labels, lbl) {
		p.metrics.succeeded(object, p.clock.Now())
		return nil
	}
	ac := corev1ac.ConfigMap(name, ns).WithLabels(lbl).WithData(map[string]string{key: want})
	if _, err := p.client.CoreV1().ConfigMaps(ns).Apply(ctx, ac, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
		p.metrics.failed(object)
		return fmt.Errorf("applying ConfigMap %s/%s: %w", ns, name, err)
	}
	p.metrics.wrote(object, "apply")
	p.metrics.succeeded(object, p.clock.Now())
	p.log.Debug("published ConfigMap", "namespace", ns, "name", name, "restored", cur != nil)
	return nil
}

func hasLabels(got, want map[string]string) bool {
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

// cachedConfigMap is ConfigMap ns/name from the shared cache (only those
// with meshca's label are there), or nil when there is none.
func (p *Publisher) cachedConfigMap(ctx context.Context, ns, name string) (*corev1.ConfigMap, error) {
	cm := &corev1.ConfigMap{}
	err := p.cache.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, cm)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return cm, nil
}

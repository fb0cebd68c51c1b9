package impersonation

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// podDeleteHandler reports each deleted pod's UID, also when the informer
// only learnt of the deletion on a relist (cache.DeletedFinalStateUnknown).
func podDeleteHandler(cluster string, deleted func(cluster, uid string)) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{DeleteFunc: func(obj any) {
		if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		if p, ok := obj.(*corev1.Pod); ok && p.UID != "" {
			deleted(cluster, string(p.UID))
		}
	}}
}

// indexNodeServiceAccount indexes running pods by node and ServiceAccount,
// the exact question Authorize asks: is a pod of ns/sa on node N?
const indexNodeServiceAccount = "nodeServiceAccount"

func nodeServiceAccountKey(node, ns, sa string) string { return node + "/" + ns + "/" + sa }

// byNodeServiceAccount is the index function: scheduled pods that have not
// finished, keyed "<node>/<ns>/<sa>". An update re-indexes the pod, so a pod
// that turns Failed or Succeeded leaves the index.
func byNodeServiceAccount(obj any) ([]string, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok || p.Spec.NodeName == "" || !running(p) {
		return nil, nil
	}
	return []string{nodeServiceAccountKey(p.Spec.NodeName, p.Namespace, podServiceAccount(p))}, nil
}

// running reports whether a pod counts: every phase but Failed and
// Succeeded (a Pending pod on the node is starting and may ask for its
// certificate through ztunnel already).
func running(p *corev1.Pod) bool {
	return p.Status.Phase != corev1.PodFailed && p.Status.Phase != corev1.PodSucceeded
}

func podServiceAccount(p *corev1.Pod) string {
	if p.Spec.ServiceAccountName == "" {
		return "default"
	}
	return p.Spec.ServiceAccountName
}

// slimPod is the informers' transform: it keeps only what Authorize reads,
// so that the cache of a large cluster stays small.
func slimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil // e.g. cache.DeletedFinalStateUnknown
	}
	return &corev1.Pod{
		TypeMeta: p.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name:              p.Name,
			Namespace:         p.Namespace,
			UID:               p.UID,
			ResourceVersion:   p.ResourceVersion,
			DeletionTimestamp: p.DeletionTimestamp,
		},
		Spec:   corev1.PodSpec{ServiceAccountName: p.Spec.ServiceAccountName, NodeName: p.Spec.NodeName},
		Status: corev1.PodStatus{Phase: p.Status.Phase},
	}, nil
}

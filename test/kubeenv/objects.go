package kubeenv

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// FieldManager is the server-side-apply field manager of ApplyYAML.
const FieldManager = "meshca-kubeenv"

// CreateNamespace creates namespace name. An existing namespace is not an
// error.
func (e *Env) CreateNamespace(ctx context.Context, name string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	_, err := e.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("kubeenv: creating namespace %s: %w", name, err)
	}
	return nil
}

// EnsureServiceAccount creates namespace ns and ServiceAccount ns/sa when
// missing and returns the ServiceAccount.
func (e *Env) EnsureServiceAccount(ctx context.Context, ns, sa string) (*corev1.ServiceAccount, error) {
	if err := e.CreateNamespace(ctx, ns); err != nil {
		return nil, err
	}
	obj := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa}}
	got, err := e.Client.CoreV1().ServiceAccounts(ns).Create(ctx, obj, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		got, err = e.Client.CoreV1().ServiceAccounts(ns).Get(ctx, sa, metav1.GetOptions{})
	}
	if err != nil {
		return nil, fmt.Errorf("kubeenv: ensuring serviceaccount %s/%s: %w", ns, sa, err)
	}
	return got, nil
}

// MintToken returns a ServiceAccount token for ns/sa from the TokenRequest
// API, creating the namespace and ServiceAccount when missing. Empty
// audiences means the apiserver's own audience; ttl 0 means one hour (the
// apiserver's minimum is 10 minutes). The token is bound to the
// ServiceAccount only; see MintPodToken for a pod-bound one.
func (e *Env) MintToken(ctx context.Context, ns, sa string, audiences []string, ttl time.Duration) (string, error) {
	return e.mint(ctx, ns, sa, audiences, ttl, nil)
}

// MintPodToken returns a token for pod's ServiceAccount bound to pod, like
// the projected token a kubelet mounts: TokenReview then reports the pod's
// name and UID in status.user.extra["authentication.kubernetes.io/pod-name"
// and "pod-uid"]. The token stops reviewing as authenticated once the pod
// is deleted.
func (e *Env) MintPodToken(ctx context.Context, pod *corev1.Pod, audiences []string, ttl time.Duration) (string, error) {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	ref := &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}
	return e.mint(ctx, pod.Namespace, sa, audiences, ttl, ref)
}

func (e *Env) mint(ctx context.Context, ns, sa string, audiences []string, ttl time.Duration, ref *authenticationv1.BoundObjectReference) (string, error) {
	if _, err := e.EnsureServiceAccount(ctx, ns, sa); err != nil {
		return "", err
	}
	if ttl == 0 {
		ttl = time.Hour
	}
	secs := int64(ttl / time.Second)
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		Audiences:         audiences,
		ExpirationSeconds: &secs,
		BoundObjectRef:    ref,
	}}
	got, err := e.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, tr, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("kubeenv: TokenRequest for %s/%s: %w", ns, sa, err)
	}
	return got.Status.Token, nil
}

// ClientAs returns a rest.Config and clientset that authenticate as
// ServiceAccount ns/sa (system:serviceaccount:<ns>:<sa>, groups
// system:serviceaccounts and system:serviceaccounts:<ns>) with a bearer
// token for the apiserver's default audience, valid for 24h. The
// ServiceAccount is created when missing; it has no permissions until a
// test binds RBAC to it (e.g. with ApplyYAMLFile).
func (e *Env) ClientAs(ctx context.Context, ns, sa string) (*rest.Config, kubernetes.Interface, error) {
	token, err := e.MintToken(ctx, ns, sa, nil, 24*time.Hour)
	if err != nil {
		return nil, nil, err
	}
	cfg := rest.AnonymousClientConfig(e.Config)
	cfg.BearerToken = token
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("kubeenv: %w", err)
	}
	return cfg, cs, nil
}

// CreateNode creates a plain Node object (no kubelet runs) and returns it.
func (e *Env) CreateNode(ctx context.Context, name string) (*corev1.Node, error) {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	got, err := e.Client.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("kubeenv: creating node %s: %w", name, err)
	}
	return got, nil
}

// CreatePod creates a plain Pod ns/name that runs as ServiceAccount sa on
// node (no scheduler or kubelet runs: spec.nodeName is set directly), then
// sets its status to phase Running. The namespace and ServiceAccount are
// created when missing; the Node object is not (see CreateNode).
func (e *Env) CreatePod(ctx context.Context, ns, name, sa, node string) (*corev1.Pod, error) {
	if _, err := e.EnsureServiceAccount(ctx, ns, sa); err != nil {
		return nil, err
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{
			ServiceAccountName: sa,
			NodeName:           node,
			Containers:         []corev1.Container{{Name: "app", Image: "registry.invalid/meshca-test:latest"}},
		},
	}
	got, err := e.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("kubeenv: creating pod %s/%s: %w", ns, name, err)
	}
	got.Status.Phase = corev1.PodRunning
	got, err = e.Client.CoreV1().Pods(ns).UpdateStatus(ctx, got, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("kubeenv: setting pod %s/%s running: %w", ns, name, err)
	}
	return got, nil
}

// Node and Pod are CreateNode and CreatePod for a test that fails on
// error. The object is deleted at once (grace period 0: no kubelet runs to
// finish a graceful deletion) when the test ends, so that the test runs
// again against the same apiserver (go test -count=N) and its fixed names
// meet no object of the run before.
func (e *Env) Node(t testing.TB, name string) *corev1.Node {
	t.Helper()
	n, err := e.CreateNode(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.deleteNow(t, e.Client.CoreV1().Nodes().Delete, name, "node "+name) })
	return n
}

// Pod: see Node.
func (e *Env) Pod(t testing.TB, ns, name, sa, node string) *corev1.Pod {
	t.Helper()
	p, err := e.CreatePod(t.Context(), ns, name, sa, node)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.deleteNow(t, e.Client.CoreV1().Pods(ns).Delete, name, "pod "+ns+"/"+name) })
	return p
}

// deleteNow deletes an object with a grace period of 0. An object the test
// deleted itself is not an error.
func (e *Env) deleteNow(t testing.TB, del func(context.Context, string, metav1.DeleteOptions) error, name, what string) {
	t.Helper()
	zero := int64(0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := del(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("kubeenv: deleting %s: %v", what, err)
	}
}

// ApplyYAMLFile server-side applies every object of a (multi-document)
// YAML manifest, such as the RBAC under deploy/, and returns them as
// applied. See ApplyYAML.
func (e *Env) ApplyYAMLFile(ctx context.Context, path string) ([]*unstructured.Unstructured, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("kubeenv: %w", err)
	}
	objs, err := e.ApplyYAML(ctx, b)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return objs, nil
}

// ApplyYAML server-side applies every object of a (multi-document) YAML or
// JSON manifest in order, with field manager FieldManager and forced
// ownership. A namespaced object without a namespace goes to "default". A
// kind that the apiserver does not know yet (a CRD applied earlier in the
// same manifest) is retried for up to 30 seconds.
func (e *Env) ApplyYAML(ctx context.Context, manifest []byte) ([]*unstructured.Unstructured, error) {
	objs, err := decodeManifest(manifest)
	if err != nil {
		return nil, err
	}
	applied := make([]*unstructured.Unstructured, 0, len(objs))
	for _, u := range objs {
		namespaced, err := e.isNamespaced(ctx, u)
		if err != nil {
			return applied, err
		}
		if namespaced && u.GetNamespace() == "" {
			u.SetNamespace(metav1.NamespaceDefault)
		}
		if !namespaced {
			u.SetNamespace("")
		}
		if err := e.CtrlClient.Apply(ctx, client.ApplyConfigurationFromUnstructured(u),
			client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
			return applied, fmt.Errorf("kubeenv: applying %s %s: %w", u.GroupVersionKind(), objectKey(u), err)
		}
		applied = append(applied, u)
	}
	return applied, nil
}

// isNamespaced asks the RESTMapper about u's kind, waiting for kinds that
// are not served yet (a freshly created CRD).
func (e *Env) isNamespaced(ctx context.Context, u *unstructured.Unstructured) (bool, error) {
	var namespaced bool
	var last error
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		namespaced, last = e.CtrlClient.IsObjectNamespaced(u)
		if last == nil {
			return true, nil
		}
		if meta.IsNoMatchError(last) {
			return false, nil
		}
		return false, last
	})
	if err != nil {
		if last != nil {
			err = last
		}
		return false, fmt.Errorf("kubeenv: resolving %s %s: %w", u.GroupVersionKind(), objectKey(u), err)
	}
	return namespaced, nil
}

func decodeManifest(manifest []byte) ([]*unstructured.Unstructured, error) {
	r := utilyaml.NewYAMLOrJSONDecoder(bufio.NewReader(bytes.NewReader(manifest)), 4096)
	var objs []*unstructured.Unstructured
	for {
		var raw map[string]any
		if err := r.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return objs, nil
			}
			return nil, fmt.Errorf("kubeenv: decoding manifest: %w", err)
		}
		if len(raw) == 0 {
			continue // an empty document
		}
		u := &unstructured.Unstructured{Object: raw}
		if u.GetKind() == "" || u.GetAPIVersion() == "" {
			return nil, fmt.Errorf("kubeenv: manifest object without apiVersion/kind: %v", raw)
		}
		if u.IsList() {
			err := u.EachListItem(func(o runtime.Object) error {
				objs = append(objs, o.(*unstructured.Unstructured))
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("kubeenv: decoding %s: %w", u.GetKind(), err)
			}
			continue
		}
		objs = append(objs, u)
	}
}

func objectKey(u *unstructured.Unstructured) string {
	if u.GetNamespace() == "" {
		return u.GetName()
	}
	return u.GetNamespace() + "/" + u.GetName()
}

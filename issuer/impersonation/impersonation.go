// Package impersonation decides whether a node agent (ztunnel) may obtain a
// certificate for another workload's identity: the ImpersonatedIdentity
// metadata of Istio's IstioCertificateService CreateCertificate request
// (istio.io/api security/v1alpha1, used by ztunnel). It owns the rule and
// the pod informers that feed it: the caller must be a trusted node
// account, authenticated by TokenReview with a pod-bound token; its pod
// must exist with the same UID; a pod that is not Failed or Succeeded and
// runs as the impersonated ServiceAccount must be on the caller's node;
// and (meshca's addition) the impersonated identity must be in the mesh's
// trust domain.
//
// It answers from informer caches only, never with a GET per request. It
// does not authenticate callers (package authn does) and does not map its
// answers to gRPC codes (the service does: a *Denied is PermissionDenied,
// ErrNotReady is Unavailable).
package impersonation

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/meshca/meshca/ca/identity"
	"github.com/meshca/meshca/issuer/authn"
)

// Stable reasons of a *Denied.
const (
	// ReasonUntrustedCaller: the caller is not a trusted node account, or
	// was not authenticated by TokenReview.
	ReasonUntrustedCaller = "untrusted_caller"
	// ReasonCallerPodMismatch: the caller's token names no pod, or a pod
	// that is gone, has another UID or ServiceAccount, is finished or is
	// not on a node.
	ReasonCallerPodMismatch = "caller_pod_mismatch"
	// ReasonNoPodOnNode: no running pod of the impersonated ServiceAccount
	// is on the caller's node.
	ReasonNoPodOnNode = "no_pod_on_node"
	// ReasonForeignTrustDomain: the impersonated identity is in another
	// trust domain.
	ReasonForeignTrustDomain = "foreign_trust_domain"
	// ReasonMalformedIdentity: the impersonated identity is not
	// spiffe://<td>/ns/<ns>/sa/<sa>.
	ReasonMalformedIdentity = "malformed_identity"
)

// Denied is a refused impersonation. Reason is one of the Reason*
// constants; the message is for the audit log.
type Denied struct {
	Reason  string
	Message string
}

func (d *Denied) Error() string { return "impersonation denied (" + d.Reason + "): " + d.Message }

func deny(reason, format string, args ...any) *Denied {
	return &Denied{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// ReasonOf returns the stable reason of an Authorize error: a Denied's
// reason, "not_ready" for ErrNotReady, else "error".
func ReasonOf(err error) string {
	var d *Denied
	switch {
	case errors.As(err, &d):
		return d.Reason
	case errors.Is(err, ErrNotReady):
		return "not_ready"
	}
	return "error"
}

// ErrNotReady means the pod informer of the caller's cluster has not
// synced (or Start has not run); the request should be retried
// (Unavailable).
var ErrNotReady = errors.New("impersonation: pod informers have not synced")

// Options configure New.
type Options struct {
	// TrustDomain is the mesh's trust domain. Required.
	TrustDomain string
	// TrustedNodeAccounts are "namespace/serviceaccount" pairs allowed to
	// impersonate, e.g. "istio-system/ztunnel". Required.
	TrustedNodeAccounts []string
	// Clusters maps a cluster name (authn.Caller.Cluster, see
	// authn.Clusters.Clients) to its client; each gets a pod informer.
	Clusters map[string]kubernetes.Interface
	// ResyncPeriod of the informers; 0 means none.
	ResyncPeriod time.Duration
	// PodDeleted, when set, is told of every pod deletion the informers
	// see (cluster name and pod UID), e.g. authn.TokenReviewer.ForgetPod,
	// so that a cached review of a token bound to the pod ends with it.
	PodDeleted func(cluster, uid string)
}

// Authorizer implements the impersonation rule. Call Start before
// Authorize, and Stop at the end.
type Authorizer struct {
	trustDomain string
	trusted     map[string]bool // "ns/sa"
	resync      time.Duration
	clients     map[string]kubernetes.Interface
	podDeleted  func(cluster, uid string)

	mu        sync.RWMutex
	pods      map[string]cache.SharedIndexInformer // by cluster, set when synced
	factories []informers.SharedInformerFactory
	cancel    context.CancelFunc
}

// New validates the options. It starts nothing.
func New(o Options) (*Authorizer, error) {
	if o.TrustDomain == "" {
		return nil, errors.New("impersonation: a TrustDomain is required")
	}
	if len(o.TrustedNodeAccounts) == 0 {
		return nil, errors.New("impersonation: no TrustedNodeAccounts; leave impersonation off instead")
	}
	if len(o.Clusters) == 0 {
		return nil, errors.New("impersonation: no Clusters")
	}
	td, err := identity.TrustDomain(o.TrustDomain)
	if err != nil {
		return nil, fmt.Errorf("impersonation: %w", err)
	}
	a := &Authorizer{trustDomain: o.TrustDomain, trusted: map[string]bool{}, resync: o.ResyncPeriod, clients: maps.Clone(o.Clusters), podDeleted: o.PodDeleted}
	for _, acc := range o.TrustedNodeAccounts {
		ns, sa, ok := strings.Cut(acc, "/")
		if _, err := identity.ForServiceAccount(td, ns, sa); !ok || err != nil {
			return nil, fmt.Errorf("impersonation: trusted node account %q is not namespace/serviceaccount", acc)
		}
		a.trusted[acc] = true
	}
	return a, nil
}

// Start runs a pod informer per cluster until ctx ends or Stop is called,
// and waits until every one has synced. When ctx ends first it returns an
// error; call Stop then. Each cluster's callers are authorized once that
// cluster's informer has synced (until then Authorize answers
// ErrNotReady for them): a remote cluster that cannot be reached, or whose
// kubeconfig may not list pods, does not hold back the others.
func (a *Authorizer) Start(ctx context.Context) error {
	runCtx, cancel := context.WithCancel(ctx)
	pods := make(map[string]cache.SharedIndexInformer, len(a.clients))
	var factories []informers.SharedInformerFactory
	for _, name := range slices.Sorted(maps.Keys(a.clients)) {
		f := informers.NewSharedInformerFactoryWithOptions(a.clients[name], a.resync, informers.WithTransform(slimPod))
		inf := f.Core().V1().Pods().Informer()
		if err := inf.AddIndexers(cache.Indexers{indexNodeServiceAccount: byNodeServiceAccount}); err != nil {
			cancel()
			return fmt.Errorf("impersonation: pod index of cluster %q: %w", name, err)
		}
		if a.podDeleted != nil {
			if _, err := inf.AddEventHandler(podDeleteHandler(name, a.podDeleted)); err != nil {
				cancel()
				return fmt.Errorf("impersonation: pod handler of cluster %q: %w", name, err)
			}
		}
		f.Start(runCtx.Done())
		pods[name] = inf
		factories = append(factories, f)
	}
	a.mu.Lock()
	a.factories, a.cancel = append(a.factories, factories...), cancel
	a.pods = pods
	a.mu.Unlock()
	for _, name := range slices.Sorted(maps.Keys(pods)) {
		if !cache.WaitForCacheSync(ctx.Done(), pods[name].HasSynced) {
			return fmt.Errorf("impersonation: pods of cluster %q did not sync: %w", name, context.Cause(ctx))
		}
	}
	return nil
}

// Stop stops the informers and waits for them to end.
func (a *Authorizer) Stop() {
	a.mu.Lock()
	cancel, factories := a.cancel, a.factories
	a.cancel, a.factories, a.pods = nil, nil, nil
	a.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	for _, f := range factories {
		f.Shutdown()
	}
}

// Authorize returns the identity caller may impersonate, or a *Denied, or
// ErrNotReady. requested is the ImpersonatedIdentity metadata value.
func (a *Authorizer) Authorize(_ context.Context, caller *authn.Caller, requested string) (*url.URL, error) {
	if caller == nil || caller.Authenticator != authn.TokenReview {
		return nil, deny(ReasonUntrustedCaller, "impersonation needs a caller authenticated by a Kubernetes TokenReview")
	}
	account := caller.Namespace + "/" + caller.ServiceAccount
	if !a.trusted[account] {
		return nil, deny(ReasonUntrustedCaller, "ServiceAccount %s is not a trusted node account", account)
	}
	k, err := identity.ParseKubernetes(requested)
	if err != nil {
		return nil, deny(ReasonMalformedIdentity, "%v", err)
	}
	id, ns, sa := k.ID.URL(), k.Namespace, k.ServiceAccount
	if k.ID.TrustDomain().Name() != a.trustDomain {
		return nil, deny(ReasonForeignTrustDomain, "identity %s is not in trust domain %s", id, a.trustDomain)
	}
	if caller.PodName == "" || caller.PodUID == "" {
		return nil, deny(ReasonCallerPodMismatch, "the caller's token is not bound to a pod")
	}

	a.mu.RLock()
	pods := a.pods
	a.mu.RUnlock()
	if pods == nil {
		return nil, ErrNotReady
	}
	inf, ok := pods[caller.Cluster]
	if !ok {
		return nil, deny(ReasonCallerPodMismatch, "no pods are watched in cluster %q", caller.Cluster)
	}
	if !inf.HasSynced() {
		return nil, fmt.Errorf("%w (cluster %s)", ErrNotReady, caller.Cluster)
	}
	callerKey := caller.Namespace + "/" + caller.PodName
	obj, exists, err := inf.GetIndexer().GetByKey(callerKey)
	if err != nil {
		return nil, err
	}
	if !exists {
		return nil, deny(ReasonCallerPodMismatch, "the caller's pod %s does not exist in cluster %s", callerKey, caller.Cluster)
	}
	pod := obj.(*corev1.Pod)
	switch {
	case string(pod.UID) != caller.PodUID:
		return nil, deny(ReasonCallerPodMismatch, "the caller's pod %s has UID %s, the token names %s", callerKey, pod.UID, caller.PodUID)
	case podServiceAccount(pod) != caller.ServiceAccount:
		return nil, deny(ReasonCallerPodMismatch, "the caller's pod %s runs as %s, not %s", callerKey, podServiceAccount(pod), caller.ServiceAccount)
	case pod.Spec.NodeName == "":
		return nil, deny(ReasonCallerPodMismatch, "the caller's pod %s is not on a node", callerKey)
	case !running(pod):
		return nil, deny(ReasonCallerPodMismatch, "the caller's pod %s has finished (%s)", callerKey, pod.Status.Phase)
	}
	node := pod.Spec.NodeName

	targets, err := inf.GetIndexer().ByIndex(indexNodeServiceAccount, nodeServiceAccountKey(node, ns, sa))
	if err != nil {
		return nil, err
	}
	for _, o := range targets {
		if p := o.(*corev1.Pod); running(p) && p.Spec.NodeName == node {
			return id, nil
		}
	}
	return nil, deny(ReasonNoPodOnNode, "no running pod of ServiceAccount %s/%s is on node %s (cluster %s)", ns, sa, node, caller.Cluster)
}

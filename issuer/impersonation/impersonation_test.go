package impersonation_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshca/meshca/issuer/authn"
	"github.com/meshca/meshca/issuer/impersonation"
	"github.com/meshca/meshca/test/kubeenv"
)

var env *kubeenv.Env

func TestMain(m *testing.M) { os.Exit(kubeenv.RunMain(m, &env)) }

const (
	trustDomain = "cluster.local"
	agentNS     = "istio-system"
	agentSA     = "ztunnel"
)

func testCtx(t *testing.T) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

func startAuthorizer(t *testing.T) *impersonation.Authorizer {
	t.Helper()
	a, err := impersonation.New(impersonation.Options{
		TrustDomain:         trustDomain,
		TrustedNodeAccounts: []string{agentNS + "/" + agentSA},
		Clusters:            map[string]kubernetes.Interface{authn.DefaultClusterID: env.Client},
	})
	require.NoError(t, err)
	require.NoError(t, a.Start(testCtx(t)))
	t.Cleanup(a.Stop)
	return a
}

// node creates a Node object named after the test.
func node(t *testing.T, suffix string) string {
	t.Helper()
	name := fmt.Sprintf("imp-%d-%s", time.Now().UnixNano(), suffix)
	env.Node(t, name)
	return name
}

// pod creates a Running pod ns/name as sa on node, deleted when the test ends.
func pod(t *testing.T, ns, name, sa, node string) *corev1.Pod {
	t.Helper()
	return env.Pod(t, ns, name, sa, node)
}

// callerOf is the caller that TokenReview makes of a token bound to p.
func callerOf(p *corev1.Pod) *authn.Caller {
	return &authn.Caller{
		Identity:      &url.URL{Scheme: "spiffe", Host: trustDomain, Path: "/ns/" + p.Namespace + "/sa/" + p.Spec.ServiceAccountName},
		Authenticator: authn.TokenReview, Cluster: authn.DefaultClusterID,
		Namespace: p.Namespace, ServiceAccount: p.Spec.ServiceAccountName,
		PodName: p.Name, PodUID: string(p.UID),
	}
}

func workloadID(ns, sa string) string { return "spiffe://" + trustDomain + "/ns/" + ns + "/sa/" + sa }

// authorizeUntil polls Authorize until its outcome is want (a reason, or ""
// for allowed), because the informer learns of changes asynchronously. It
// fails with the last outcome at the deadline.
func authorizeUntil(t *testing.T, a *impersonation.Authorizer, caller *authn.Caller, requested, want string) *url.URL {
	t.Helper()
	var got *url.URL
	var err error
	_ = wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
		got, err = a.Authorize(context.Background(), caller, requested)
		return outcome(err) == want, nil
	})
	require.Equal(t, want, outcome(err), "last error: %v", err)
	return got
}

func outcome(err error) string {
	if err == nil {
		return ""
	}
	return impersonation.ReasonOf(err)
}

func requireDenied(t *testing.T, a *impersonation.Authorizer, caller *authn.Caller, requested, reason string) {
	t.Helper()
	got, err := a.Authorize(context.Background(), caller, requested)
	require.Nil(t, got)
	var d *impersonation.Denied
	require.ErrorAs(t, err, &d)
	require.Equal(t, reason, d.Reason, "denial: %v", err)
}

func TestImpersonation_AllowsTrustedNodeAgentForPodOnItsNode(t *testing.T) {
	n := node(t, "a")
	agent := pod(t, agentNS, "ztunnel-"+n, agentSA, n)
	pod(t, "imp-allow", "web-0", "web", n)
	a := startAuthorizer(t)

	got := authorizeUntil(t, a, callerOf(agent), workloadID("imp-allow", "web"), "")
	require.Equal(t, "spiffe://cluster.local/ns/imp-allow/sa/web", got.String())
}

func TestImpersonation_AllowsCallerAuthenticatedByTokenReviewOfPodBoundToken(t *testing.T) {
	c := testCtx(t)
	n := node(t, "tr")
	agent := pod(t, agentNS, "ztunnel-"+n, agentSA, n)
	pod(t, "imp-e2e", "api-0", "api", n)
	token, err := env.MintPodToken(c, agent, []string{"istio-ca"}, time.Hour)
	require.NoError(t, err)
	clusters, err := authn.NewClusters("", env.Client, nil)
	require.NoError(t, err)
	reviewer, err := authn.NewTokenReviewer(authn.TokenReviewOptions{Clusters: clusters, TrustDomain: trustDomain})
	require.NoError(t, err)
	caller, err := reviewer.Authenticate(c, authn.Credentials{BearerToken: token})
	require.NoError(t, err)
	a := startAuthorizer(t)

	got := authorizeUntil(t, a, caller, workloadID("imp-e2e", "api"), "")
	require.Equal(t, "spiffe://cluster.local/ns/imp-e2e/sa/api", got.String())
}

func TestImpersonation_RejectsCallersThatAreNotTrustedNodeAccounts(t *testing.T) {
	n := node(t, "u")
	agent := pod(t, agentNS, "ztunnel-"+n, agentSA, n)
	other := pod(t, agentNS, "not-ztunnel-"+n, "istio-ingressgateway", n)
	lookalike := pod(t, "default", "ztunnel-"+n, agentSA, n)
	pod(t, "imp-untrusted", "db-0", "db", n)
	a := startAuthorizer(t)
	want := workloadID("imp-untrusted", "db")
	authorizeUntil(t, a, callerOf(agent), want, "") // the informer has the pods

	viaJWT := callerOf(agent)
	viaJWT.Authenticator = authn.JWT
	viaCert := callerOf(agent)
	viaCert.Authenticator = authn.ClientCertificate
	for name, caller := range map[string]*authn.Caller{
		"another ServiceAccount on the node":            callerOf(other),
		"a ztunnel ServiceAccount in another namespace": callerOf(lookalike),
		"the trusted account, authenticated by JWT":     viaJWT,
		"the trusted account, by client certificate":    viaCert,
		"no caller": nil,
	} {
		t.Run(name, func(t *testing.T) {
			requireDenied(t, a, caller, want, impersonation.ReasonUntrustedCaller)
		})
	}
}

func TestImpersonation_RejectsServiceAccountWithNoPodOnCallersNode(t *testing.T) {
	na, nb := node(t, "a"), node(t, "b")
	agentA := pod(t, agentNS, "ztunnel-"+na, agentSA, na)
	agentB := pod(t, agentNS, "ztunnel-"+nb, agentSA, nb)
	pod(t, "imp-elsewhere", "pay-0", "payments", nb)
	pod(t, "imp-elsewhere", "web-0", "web", na)
	a := startAuthorizer(t)
	want := workloadID("imp-elsewhere", "payments")

	authorizeUntil(t, a, callerOf(agentB), want, "") // the informer has the pod, on node b
	authorizeUntil(t, a, callerOf(agentA), workloadID("imp-elsewhere", "web"), "")
	requireDenied(t, a, callerOf(agentA), want, impersonation.ReasonNoPodOnNode)
	requireDenied(t, a, callerOf(agentA), workloadID("imp-elsewhere", "nobody"), impersonation.ReasonNoPodOnNode)
	requireDenied(t, a, callerOf(agentA), workloadID("imp-nowhere", "payments"), impersonation.ReasonNoPodOnNode)
}

func TestImpersonation_FinishedPodOnNodeDoesNotCount(t *testing.T) {
	for _, phase := range []corev1.PodPhase{corev1.PodFailed, corev1.PodSucceeded} {
		t.Run(string(phase), func(t *testing.T) {
			c := testCtx(t)
			n := node(t, "f")
			agent := pod(t, agentNS, "ztunnel-"+n, agentSA, n)
			job := pod(t, "imp-finished", "job-"+n, "batch", n)
			a := startAuthorizer(t)
			want := workloadID("imp-finished", "batch")
			authorizeUntil(t, a, callerOf(agent), want, "")

			job.Status.Phase = phase
			_, err := env.Client.CoreV1().Pods(job.Namespace).UpdateStatus(c, job, metav1.UpdateOptions{})
			require.NoError(t, err)
			authorizeUntil(t, a, callerOf(agent), want, impersonation.ReasonNoPodOnNode)
		})
	}
}

func TestImpersonation_RejectsForeignTrustDomain(t *testing.T) {
	n := node(t, "td")
	agent := pod(t, agentNS, "ztunnel-"+n, agentSA, n)
	pod(t, "imp-td", "web-0", "web", n)
	a := startAuthorizer(t)
	authorizeUntil(t, a, callerOf(agent), workloadID("imp-td", "web"), "")
	requireDenied(t, a, callerOf(agent), "spiffe://evil.example/ns/imp-td/sa/web", impersonation.ReasonForeignTrustDomain)
}

func TestImpersonation_RejectsMalformedIdentity(t *testing.T) {
	n := node(t, "m")
	agent := pod(t, agentNS, "ztunnel-"+n, agentSA, n)
	a := startAuthorizer(t)
	for name, id := range map[string]string{
		"empty":                 "",
		"not a URI":             "%zz",
		"https":                 "https://cluster.local/ns/a/sa/b",
		"no trust domain":       "spiffe:///ns/a/sa/b",
		"extra path segment":    "spiffe://cluster.local/ns/a/sa/b/c",
		"not ns/sa":             "spiffe://cluster.local/namespace/a/serviceaccount/b",
		"dot-dot":               "spiffe://cluster.local/ns/../sa/b",
		"escaped slash":         "spiffe://cluster.local/ns/a%2Fsa/sa/b",
		"query":                 "spiffe://cluster.local/ns/a/sa/b?x=1",
		"port":                  "spiffe://cluster.local:443/ns/a/sa/b",
		"user info":             "spiffe://x@cluster.local/ns/a/sa/b",
		"upper-case namespace":  "spiffe://cluster.local/ns/Default/sa/b",
		"empty service account": "spiffe://cluster.local/ns/a/sa/",
	} {
		t.Run(name, func(t *testing.T) {
			requireDenied(t, a, callerOf(agent), id, impersonation.ReasonMalformedIdentity)
		})
	}
}

func TestImpersonation_RejectsCallerWhosePodUIDDoesNotMatch(t *testing.T) {
	c := testCtx(t)
	n := node(t, "uid")
	agent := pod(t, agentNS, "ztunnel-"+n, agentSA, n)
	pod(t, "imp-uid", "web-0", "web", n)
	a := startAuthorizer(t)
	want := workloadID("imp-uid", "web")
	authorizeUntil(t, a, callerOf(agent), want, "")

	forged := callerOf(agent)
	forged.PodUID = "00000000-0000-0000-0000-000000000000"
	requireDenied(t, a, forged, want, impersonation.ReasonCallerPodMismatch)

	unbound := callerOf(agent)
	unbound.PodName, unbound.PodUID = "", ""
	requireDenied(t, a, unbound, want, impersonation.ReasonCallerPodMismatch)

	// A token of a deleted pod, replayed after a pod of the same name came back.
	stale := callerOf(agent)
	require.NoError(t, env.Client.CoreV1().Pods(agentNS).Delete(c, agent.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}))
	authorizeUntil(t, a, stale, want, impersonation.ReasonCallerPodMismatch)
	again := pod(t, agentNS, agent.Name, agentSA, n)
	authorizeUntil(t, a, callerOf(again), want, "")
	requireDenied(t, a, stale, want, impersonation.ReasonCallerPodMismatch)
}

func TestImpersonation_RejectsCallerInClusterWithoutInformer(t *testing.T) {
	n := node(t, "cl")
	agent := pod(t, agentNS, "ztunnel-"+n, agentSA, n)
	pod(t, "imp-cluster", "web-0", "web", n)
	a := startAuthorizer(t)
	authorizeUntil(t, a, callerOf(agent), workloadID("imp-cluster", "web"), "")
	remote := callerOf(agent)
	remote.Cluster = "remote-1"
	requireDenied(t, a, remote, workloadID("imp-cluster", "web"), impersonation.ReasonCallerPodMismatch)
}

func TestImpersonation_IsNotReadyBeforeStart(t *testing.T) {
	a, err := impersonation.New(impersonation.Options{
		TrustDomain: trustDomain, TrustedNodeAccounts: []string{agentNS + "/" + agentSA},
		Clusters: map[string]kubernetes.Interface{authn.DefaultClusterID: env.Client},
	})
	require.NoError(t, err)
	caller := &authn.Caller{Authenticator: authn.TokenReview, Cluster: authn.DefaultClusterID,
		Namespace: agentNS, ServiceAccount: agentSA, PodName: "ztunnel-x", PodUID: "u"}
	_, err = a.Authorize(context.Background(), caller, workloadID("a", "b"))
	require.ErrorIs(t, err, impersonation.ErrNotReady)
	require.Equal(t, "not_ready", impersonation.ReasonOf(err))
}

func TestNew_RejectsUnusableOptions(t *testing.T) {
	clusters := map[string]kubernetes.Interface{authn.DefaultClusterID: env.Client}
	for name, o := range map[string]impersonation.Options{
		"no trust domain":       {TrustedNodeAccounts: []string{"istio-system/ztunnel"}, Clusters: clusters},
		"no trusted accounts":   {TrustDomain: trustDomain, Clusters: clusters},
		"account without slash": {TrustDomain: trustDomain, TrustedNodeAccounts: []string{"ztunnel"}, Clusters: clusters},
		"no clusters":           {TrustDomain: trustDomain, TrustedNodeAccounts: []string{"istio-system/ztunnel"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := impersonation.New(o)
			require.Error(t, err)
		})
	}
}

// A cached TokenReview success of a pod-bound token ends when the pod
// informer sees the pod deleted, not up to CacheTTL later.
func TestImpersonation_PodDeletionEndsTheCachedReviewOfItsToken(t *testing.T) {
	c := testCtx(t)
	n := node(t, "del")
	p := pod(t, "imp-deleted", "web-0", "web", n)
	token, err := env.MintPodToken(c, p, []string{"istio-ca"}, time.Hour)
	require.NoError(t, err)
	clusters, err := authn.NewClusters("", env.Client, nil)
	require.NoError(t, err)
	reviewer, err := authn.NewTokenReviewer(authn.TokenReviewOptions{Clusters: clusters, TrustDomain: trustDomain, NegativeCacheTTL: -1})
	require.NoError(t, err)
	a, err := impersonation.New(impersonation.Options{
		TrustDomain: trustDomain, TrustedNodeAccounts: []string{agentNS + "/" + agentSA},
		Clusters:   map[string]kubernetes.Interface{authn.DefaultClusterID: env.Client},
		PodDeleted: reviewer.ForgetPod,
	})
	require.NoError(t, err)
	require.NoError(t, a.Start(c))
	t.Cleanup(a.Stop)

	caller, err := reviewer.Authenticate(c, authn.Credentials{BearerToken: token})
	require.NoError(t, err)
	require.Equal(t, string(p.UID), caller.PodUID)

	zero := int64(0)
	require.NoError(t, env.Client.CoreV1().Pods(p.Namespace).Delete(c, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}))
	var last error
	_ = wait.PollUntilContextTimeout(c, 50*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
		_, last = reviewer.Authenticate(c, authn.Credentials{BearerToken: token})
		return last != nil, nil
	})
	require.Error(t, last, "the deleted pod's token was still authenticated (from the cache) 20 s later")
	require.Equal(t, authn.ReasonUnauthenticatedToken, authn.ReasonOf(last), "last error: %v", last)
}

// A remote cluster whose pods cannot be listed (unreachable, or a
// kubeconfig without list pods) does not hold back impersonation in the
// others: the local cluster's ztunnels are authorized once its informer
// has synced, and only the remote cluster's callers wait (Unavailable).
func TestImpersonation_AClusterThatDoesNotSyncHoldsBackOnlyItsOwnCallers(t *testing.T) {
	n := node(t, "sync")
	agent := pod(t, agentNS, "ztunnel-"+n, agentSA, n)
	pod(t, "imp-sync", "web-0", "web", n)
	unreachable, err := kubernetes.NewForConfig(&rest.Config{Host: "https://127.0.0.1:1", Timeout: time.Second})
	require.NoError(t, err)
	a, err := impersonation.New(impersonation.Options{
		TrustDomain:         trustDomain,
		TrustedNodeAccounts: []string{agentNS + "/" + agentSA},
		Clusters:            map[string]kubernetes.Interface{authn.DefaultClusterID: env.Client, "remote-1": unreachable},
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan error, 1)
	go func() { started <- a.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-started
		a.Stop()
	})
	authorizeUntil(t, a, callerOf(agent), workloadID("imp-sync", "web"), "")
	remote := callerOf(agent)
	remote.Cluster = "remote-1"
	_, err = a.Authorize(context.Background(), remote, workloadID("imp-sync", "web"))
	require.ErrorIs(t, err, impersonation.ErrNotReady)
	require.Equal(t, "not_ready", impersonation.ReasonOf(err))
	select {
	case err := <-started:
		t.Fatalf("Start returned before the remote cluster synced: %v", err)
	default:
	}
}

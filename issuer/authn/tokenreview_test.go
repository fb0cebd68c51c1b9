package authn_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/issuer/authn"
)

// reviewerFixture is a TokenReviewer on the test apiserver as the local
// cluster "Kubernetes", counting its reviews, on an injected clock.
type reviewerFixture struct {
	a       *authn.TokenReviewer
	calls   *reviewCounter
	clock   *testingclock.FakeClock
	metrics *prometheus.Registry
}

func newReviewer(t *testing.T, mod func(*authn.TokenReviewOptions)) *reviewerFixture {
	t.Helper()
	client, calls := countingAdminClient(t)
	clusters, err := authn.NewClusters("", client, nil)
	require.NoError(t, err)
	f := &reviewerFixture{calls: calls, clock: newClock(), metrics: prometheus.NewRegistry()}
	o := authn.TokenReviewOptions{Clusters: clusters, TrustDomain: trustDomain, Registerer: f.metrics, Clock: f.clock}
	if mod != nil {
		mod(&o)
	}
	f.a, err = authn.NewTokenReviewer(o)
	require.NoError(t, err)
	return f
}

func (f *reviewerFixture) review(t *testing.T, token, clusterID string) (*authn.Caller, error) {
	return f.a.Authenticate(testCtx(t), authn.Credentials{BearerToken: token, ClusterID: clusterID})
}

func (f *reviewerFixture) hitsMisses() (float64, float64) {
	var hits, misses float64
	mfs, _ := f.metrics.Gather()
	for _, mf := range mfs {
		switch mf.GetName() {
		case authn.MetricCacheHits:
			hits = mf.GetMetric()[0].GetCounter().GetValue()
		case authn.MetricCacheMisses:
			misses = mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return hits, misses
}

func TestTokenReview_AuthenticatesServiceAccountTokenForIstioCA(t *testing.T) {
	token, err := env.MintToken(testCtx(t), "tr-basic", "checkout", []string{"istio-ca"}, time.Hour)
	require.NoError(t, err)
	f := newReviewer(t, nil)

	caller, err := f.review(t, token, "")
	require.NoError(t, err)
	require.Equal(t, "spiffe://cluster.local/ns/tr-basic/sa/checkout", caller.Identity.String())
	require.Equal(t, authn.TokenReview, caller.Authenticator)
	require.Equal(t, "Kubernetes", caller.Cluster)
	require.Equal(t, "tr-basic", caller.Namespace)
	require.Equal(t, "checkout", caller.ServiceAccount)
	require.Empty(t, caller.PodName, "a token bound to the ServiceAccount only names no pod")
	require.Empty(t, caller.PodUID)
	require.EqualValues(t, 1, f.calls.n.Load())
}

// podBoundRun numbers the runs of the pod-bound test: the apiserver is
// shared by the whole package, so a second run (go test -count=2) needs
// a node and a pod of its own.
var podBoundRun atomic.Int32

func TestTokenReview_PodBoundTokenGivesPodNameAndUID(t *testing.T) {
	c := testCtx(t)
	n := podBoundRun.Add(1)
	node, podName := fmt.Sprintf("tr-node-%d", n), fmt.Sprintf("web-%d", n)
	_, err := env.CreateNode(c, node)
	require.NoError(t, err)
	pod, err := env.CreatePod(c, "tr-pod", podName, "web", node)
	require.NoError(t, err)
	token, err := env.MintPodToken(c, pod, []string{"istio-ca"}, time.Hour)
	require.NoError(t, err)

	caller, err := newReviewer(t, nil).review(t, token, "Kubernetes")
	require.NoError(t, err)
	require.Equal(t, "spiffe://cluster.local/ns/tr-pod/sa/web", caller.Identity.String())
	require.Equal(t, podName, caller.PodName)
	require.Equal(t, string(pod.UID), caller.PodUID)
}

func TestTokenReview_RejectsTokenWithWrongAudience(t *testing.T) {
	c := testCtx(t)
	other, err := env.MintToken(c, "tr-aud", "app", []string{"not-istio-ca"}, time.Hour)
	require.NoError(t, err)
	apiserverAud, err := env.MintToken(c, "tr-aud", "app", nil, time.Hour)
	require.NoError(t, err)
	f := newReviewer(t, nil)

	for name, token := range map[string]string{"other audience": other, "the apiserver's own audience": apiserverAud} {
		t.Run(name, func(t *testing.T) {
			caller, err := f.review(t, token, "")
			require.Nil(t, caller)
			requireFailure(t, err, authn.ReasonWrongAudience)
			require.False(t, authn.IsUnavailable(err))
		})
	}
	require.EqualValues(t, 2, f.calls.n.Load(), "both tokens were reviewed by the apiserver")
}

func TestTokenReview_AcceptsConfiguredAudienceInsteadOfDefault(t *testing.T) {
	token, err := env.MintToken(testCtx(t), "tr-aud2", "app", []string{"mesh-ca.example"}, time.Hour)
	require.NoError(t, err)
	f := newReviewer(t, func(o *authn.TokenReviewOptions) { o.Audiences = []string{"mesh-ca.example"} })
	caller, err := f.review(t, token, "")
	require.NoError(t, err)
	require.Equal(t, "spiffe://cluster.local/ns/tr-aud2/sa/app", caller.Identity.String())

	istioCA, err := env.MintToken(testCtx(t), "tr-aud2", "app", []string{"istio-ca"}, time.Hour)
	require.NoError(t, err)
	_, err = f.review(t, istioCA, "")
	requireFailure(t, err, authn.ReasonWrongAudience)
}

func TestTokenReview_RejectsExpiredForgedAndGarbageTokens(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	now := time.Now()
	expired := signJWT(t, key, "ES256", "forged", map[string]any{
		"iss": "https://kubernetes.default.svc.cluster.local", "aud": []string{"istio-ca"},
		"sub": "system:serviceaccount:tr-forged:admin",
		"iat": now.Add(-2 * time.Hour).Unix(), "exp": now.Add(-time.Hour).Unix(),
	})
	f := newReviewer(t, nil)
	for name, tc := range map[string]struct{ token, reason string }{
		"expired token signed by a foreign key": {expired, authn.ReasonUnauthenticatedToken},
		"JWT-shaped garbage":                    {jwtShapedGarbage(t, 1), authn.ReasonUnauthenticatedToken},
		"garbage":                               {"not-a-jwt", authn.ReasonMalformedToken},
		"three segments that are not base64url": {"a.b!.c", authn.ReasonMalformedToken},
		"alg none":                              {"eyJhbGciOiJub25lIn0.e30.c2ln", authn.ReasonMalformedToken},
		"larger than a ServiceAccount token":    {expired + strings.Repeat("A", authn.MaxServiceAccountTokenSize), authn.ReasonMalformedToken},
	} {
		t.Run(name, func(t *testing.T) {
			caller, err := f.review(t, tc.token, "")
			require.Nil(t, caller)
			requireFailure(t, err, tc.reason)
			require.False(t, authn.IsUnavailable(err))
			require.NotContains(t, err.Error(), tc.token, "errors never carry the token")
		})
	}
	require.EqualValues(t, 2, f.calls.n.Load(), "only the two JWT-shaped tokens were reviewed")
}

func TestTokenReview_RejectsTokenOfDeletedServiceAccount(t *testing.T) {
	c := testCtx(t)
	before, err := env.MintToken(c, "tr-deleted", "gone", []string{"istio-ca"}, time.Hour)
	require.NoError(t, err)
	after, err := env.MintToken(c, "tr-deleted", "gone", []string{"istio-ca"}, time.Hour)
	require.NoError(t, err)
	// No cache of meshca's: this is about the apiserver. Its
	// ServiceAccount lookup may lag the deletion (an informer under load);
	// a success cached meanwhile would keep answering without asking it.
	f := newReviewer(t, func(o *authn.TokenReviewOptions) { o.NegativeCacheTTL, o.CacheTTL = -1, -1 })
	_, err = f.review(t, before, "")
	require.NoError(t, err, "the ServiceAccount's tokens are good while it exists")

	require.NoError(t, env.Client.CoreV1().ServiceAccounts("tr-deleted").Delete(c, "gone", metav1.DeleteOptions{}))
	// A token not reviewed before the deletion (neither meshca nor the
	// apiserver has a cached success for it) is refused as soon as the
	// apiserver's ServiceAccount lookup sees the deletion.
	err = eventually(30*time.Second, func() error {
		if _, err := f.review(t, after, ""); err == nil {
			return errors.New("still authenticated")
		}
		return nil
	})
	require.NoError(t, err)
	caller, err := f.review(t, after, "")
	require.Nil(t, caller)
	requireFailure(t, err, authn.ReasonUnauthenticatedToken)
}

func TestTokenReview_RejectsUnknownClusterIDWithoutAskingAnApiserver(t *testing.T) {
	token, err := env.MintToken(testCtx(t), "tr-cluster", "app", []string{"istio-ca"}, time.Hour)
	require.NoError(t, err)
	f := newReviewer(t, nil)
	caller, err := f.review(t, token, "evil-cluster")
	require.Nil(t, caller)
	requireFailure(t, err, authn.ReasonUnknownCluster)
	require.Zero(t, f.calls.n.Load())
}

func TestTokenReview_ClusterIDHeaderSelectsTheReviewingCluster(t *testing.T) {
	token, err := env.MintToken(testCtx(t), "tr-multi", "app", []string{"istio-ca"}, time.Hour)
	require.NoError(t, err)
	kubeconfig := filepath.Join(t.TempDir(), "remote-1.kubeconfig")
	require.NoError(t, os.WriteFile(kubeconfig, env.KubeConfig(), 0o600))

	local, localCalls := countingAdminClient(t)
	var remoteCalls *reviewCounter
	clusters, err := authn.LoadClusters("Kubernetes", local, map[string]string{"remote-1": kubeconfig},
		func(id string, cfg *rest.Config) {
			require.Equal(t, "remote-1", id)
			remoteCalls = wrapCounting(cfg)
		})
	require.NoError(t, err)
	require.Equal(t, []string{"Kubernetes", "remote-1"}, clusters.Names())
	a, err := authn.NewTokenReviewer(authn.TokenReviewOptions{Clusters: clusters, TrustDomain: trustDomain})
	require.NoError(t, err)

	steps := []struct {
		header, cluster string
		local, remote   int64
	}{
		{header: "remote-1", cluster: "remote-1", local: 0, remote: 1},
		{header: "", cluster: "Kubernetes", local: 1, remote: 1},
		{header: "Kubernetes", cluster: "Kubernetes", local: 1, remote: 1}, // cached: same cluster, same token
		{header: "remote-1", cluster: "remote-1", local: 1, remote: 1},     // cached per cluster
	}
	for _, s := range steps {
		caller, err := a.Authenticate(testCtx(t), authn.Credentials{BearerToken: token, ClusterID: s.header})
		require.NoError(t, err, "clusterid %q", s.header)
		require.Equal(t, s.cluster, caller.Cluster, "clusterid %q", s.header)
		require.Equal(t, "spiffe://cluster.local/ns/tr-multi/sa/app", caller.Identity.String())
		require.Equal(t, s.local, localCalls.n.Load(), "local reviews after clusterid %q", s.header)
		require.Equal(t, s.remote, remoteCalls.n.Load(), "remote reviews after clusterid %q", s.header)
	}
}

func TestTokenReview_SecondReviewOfSameTokenIsServedFromCache(t *testing.T) {
	token, err := env.MintToken(testCtx(t), "tr-cache", "app", []string{"istio-ca"}, time.Hour)
	require.NoError(t, err)
	f := newReviewer(t, nil)
	first, err := f.review(t, token, "")
	require.NoError(t, err)
	first.Authenticator = "mutated by a caller"
	second, err := f.review(t, token, "")
	require.NoError(t, err)
	require.Equal(t, authn.TokenReview, second.Authenticator, "a cached caller is a copy")
	require.Equal(t, first.Identity.String(), second.Identity.String())

	require.EqualValues(t, 1, f.calls.n.Load(), "one apiserver call for two reviews")
	hits, misses := f.hitsMisses()
	require.Equal(t, 1.0, hits)
	require.Equal(t, 1.0, misses)
}

func TestTokenReview_ConcurrentReviewsOfOneTokenMakeOneApiserverCall(t *testing.T) {
	token, err := env.MintToken(testCtx(t), "tr-flight", "app", []string{"istio-ca"}, time.Hour)
	require.NoError(t, err)
	f := newReviewer(t, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 32 {
		wg.Go(func() {
			_, err := f.review(t, token, "")
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.EqualValues(t, 1, f.calls.n.Load())
}

func TestTokenReview_CachedReviewEndsAtTokenExpiry(t *testing.T) {
	token, err := env.MintToken(testCtx(t), "tr-exp", "app", []string{"istio-ca"}, 10*time.Minute)
	require.NoError(t, err)
	f := newReviewer(t, func(o *authn.TokenReviewOptions) { o.CacheTTL = time.Hour })

	_, err = f.review(t, token, "")
	require.NoError(t, err)
	f.clock.Step(9 * time.Minute)
	_, err = f.review(t, token, "")
	require.NoError(t, err)
	require.EqualValues(t, 1, f.calls.n.Load(), "before exp the cache answers")

	f.clock.Step(2 * time.Minute) // past the token's exp, well within CacheTTL
	_, err = f.review(t, token, "")
	require.NoError(t, err, "the real apiserver's clock has not moved")
	require.EqualValues(t, 2, f.calls.n.Load(), "after exp the token is reviewed again")
}

func TestTokenReview_CachedReviewEndsAtCacheTTL(t *testing.T) {
	token, err := env.MintToken(testCtx(t), "tr-ttl", "app", []string{"istio-ca"}, time.Hour)
	require.NoError(t, err)
	f := newReviewer(t, nil) // default CacheTTL 5 min

	_, err = f.review(t, token, "")
	require.NoError(t, err)
	f.clock.Step(authn.DefaultTokenReviewCacheTTL - time.Second)
	_, err = f.review(t, token, "")
	require.NoError(t, err)
	require.EqualValues(t, 1, f.calls.n.Load())
	f.clock.Step(time.Second + time.Nanosecond) // valid through exactly CacheTTL
	_, err = f.review(t, token, "")
	require.NoError(t, err)
	require.EqualValues(t, 2, f.calls.n.Load())
}

func TestTokenReview_RejectionIsCachedOnlyForTheShortNegativeTTL(t *testing.T) {
	f := newReviewer(t, nil) // default NegativeCacheTTL 5 s
	bad := jwtShapedGarbage(t, 0)
	for _, step := range []struct {
		advance time.Duration
		calls   int64
	}{{0, 1}, {time.Second, 1}, {authn.DefaultTokenReviewNegativeTTL, 2}} {
		f.clock.Step(step.advance)
		_, err := f.review(t, bad, "")
		requireFailure(t, err, authn.ReasonUnauthenticatedToken)
		require.Equal(t, step.calls, f.calls.n.Load())
	}

	off := newReviewer(t, func(o *authn.TokenReviewOptions) { o.NegativeCacheTTL = -1 })
	for i := range 2 {
		_, err := off.review(t, bad, "")
		requireFailure(t, err, authn.ReasonUnauthenticatedToken)
		require.EqualValues(t, i+1, off.calls.n.Load(), "with negative caching off every rejection is reviewed")
	}
}

func TestTokenReview_ApiserverOutageIsUnavailableNotUnauthenticated(t *testing.T) {
	c := testCtx(t)
	cached, err := env.MintToken(c, "tr-outage", "cached", []string{"istio-ca"}, time.Hour)
	require.NoError(t, err)
	fresh, err := env.MintToken(c, "tr-outage", "fresh", []string{"istio-ca"}, time.Hour)
	require.NoError(t, err)
	f := newReviewer(t, nil)
	_, err = f.review(t, cached, "")
	require.NoError(t, err)

	require.NoError(t, env.StopAPIServer())
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			_ = env.RestartAPIServer()
		}
	})

	caller, err := f.review(t, cached, "")
	require.NoError(t, err, "a cached review survives the outage")
	require.Equal(t, "spiffe://cluster.local/ns/tr-outage/sa/cached", caller.Identity.String())

	_, err = f.review(t, fresh, "")
	requireFailure(t, err, authn.ReasonReviewFailed)
	require.True(t, authn.IsUnavailable(err))
	require.ErrorIs(t, err, authn.ErrUnavailable)

	chain := authn.Chain{f.a}
	_, err = chain.Authenticate(c, authn.Credentials{BearerToken: fresh})
	requireFailure(t, err, authn.ReasonReviewFailed)
	require.True(t, authn.IsUnavailable(err), "the chain keeps the outage visible")

	require.NoError(t, env.RestartAPIServer())
	restarted = true
	caller, err = f.review(t, fresh, "")
	require.NoError(t, err, "an outage is never cached")
	require.Equal(t, "spiffe://cluster.local/ns/tr-outage/sa/fresh", caller.Identity.String())
}

func TestTokenReview_NoBearerTokenIsNoCredentials(t *testing.T) {
	f := newReviewer(t, nil)
	_, err := f.review(t, "", "")
	require.ErrorIs(t, err, authn.ErrNoCredentials)
	_, err = f.review(t, "", "evil-cluster")
	require.ErrorIs(t, err, authn.ErrNoCredentials, "without a token the cluster is not even looked at")
	require.Zero(t, f.calls.n.Load())
}

func TestNewClusters_RejectsRemoteNamedLikeTheLocalCluster(t *testing.T) {
	cs := env.Client
	_, err := authn.NewClusters("Kubernetes", cs, map[string]kubernetes.Interface{"Kubernetes": cs})
	require.Error(t, err)
	_, err = authn.NewClusters("", nil, nil)
	require.Error(t, err, "no cluster at all")

	remoteOnly, err := authn.NewClusters("", nil, map[string]kubernetes.Interface{"remote-1": cs})
	require.NoError(t, err)
	_, _, ok := remoteOnly.Lookup("")
	require.False(t, ok, "without a local client an empty clusterid is unknown")
}

func TestTokenReview_MetricsAreRegistered(t *testing.T) {
	f := newReviewer(t, nil)
	_, _ = f.review(t, jwtShapedGarbage(t, 0), "")
	n, err := testutil.GatherAndCount(f.metrics, authn.MetricCacheHits, authn.MetricCacheMisses, authn.MetricReviews, authn.MetricReviewsInFlight)
	require.NoError(t, err)
	require.Equal(t, 4, n)
	n, err = testutil.GatherAndCount(f.metrics, authn.MetricRejectedBeforeReview)
	require.NoError(t, err)
	require.Equal(t, 5, n, "one series per fixed reason (too_large, malformed, deadline, overloaded, per_peer), from the start")
}

package authn

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.step.sm/crypto/jose"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"
)

// DefaultTokenAudience is the audience istio-agent and ztunnel request for
// their ServiceAccount tokens.
const DefaultTokenAudience = "istio-ca"

// Failure reasons of the TokenReview authenticator.
const (
	// ReasonUnauthenticatedToken: the apiserver did not authenticate the
	// token (garbage, expired, revoked, or its ServiceAccount or pod is gone).
	ReasonUnauthenticatedToken = "unauthenticated_token"
	// ReasonWrongAudience: the token is not for any of our audiences.
	ReasonWrongAudience = "wrong_audience"
	// ReasonNotAServiceAccount: the token is a user's, not a ServiceAccount's.
	ReasonNotAServiceAccount = "not_a_service_account"
	// ReasonUnknownCluster: the clusterid header names no configured cluster.
	ReasonUnknownCluster = "unknown_cluster"
	// ReasonReviewFailed: the apiserver could not be asked. The failure
	// wraps ErrUnavailable; it is never cached.
	ReasonReviewFailed = "review_failed"
)

// Extra keys of a pod-bound token's review.
const (
	extraPodName = "authentication.kubernetes.io/pod-name"
	extraPodUID  = "authentication.kubernetes.io/pod-uid"
)

const serviceAccountPrefix = "system:serviceaccount:"

// maxTokenSize bounds a bearer token that the JWT authenticator parses.
const maxTokenSize = 64 << 10

// TokenReviewOptions configure NewTokenReviewer. Zero values take the
// documented defaults.
type TokenReviewOptions struct {
	// Clusters selects the apiserver by the clusterid header. Required.
	Clusters *Clusters
	// TrustDomain of the identities, e.g. "cluster.local". Required.
	TrustDomain string
	// Audiences sent as spec.audiences; the review must confirm one of
	// them. Default [DefaultTokenAudience].
	Audiences []string
	// CacheTTL bounds how long an authenticated review is reused; the
	// token's exp bounds it too, and the deletion of the token's pod or
	// ServiceAccount (reported through ForgetPod, ForgetServiceAccount)
	// ends it. Default 5 min; negative disables caching.
	CacheTTL time.Duration
	// NegativeCacheTTL is how long a rejection is reused. Default 5 s;
	// negative disables it. Outages (review_failed) are never cached.
	NegativeCacheTTL time.Duration
	// CacheSize bounds the cache of successes (least recently used
	// entries go first). Default 65536.
	CacheSize int
	// NegativeCacheSize bounds the separate cache of rejections, so that
	// garbage never evicts a success. Default 4096.
	NegativeCacheSize int
	// MaxInFlight bounds TokenReview calls in flight across all clusters.
	// A token that would need a review when every slot is taken is
	// refused at once with an Unavailable failure (reason review_failed,
	// counted as overloaded), so that the client backs off and retries.
	// Default 32.
	MaxInFlight int
	// MaxInFlightPerPeer bounds the TokenReview calls started for callers
	// from one IP address (Credentials.PeerAddr; an IPv6 /64 counts as one
	// address), so that one address flooding tokens cannot take every
	// slot; beyond it a caller is refused at once like above (counted as
	// per_peer). Callers that join a review already running for the same
	// token take no slot. Callers without an address are bound by
	// MaxInFlight only. Default 2.
	MaxInFlightPerPeer int
	// MinWait: no review is started for a caller whose deadline is nearer
	// than this (it could not receive the answer). Default 50 ms;
	// negative disables the check.
	MinWait time.Duration
	// Timeout bounds one review.
	// Default 10 s.
	Timeout time.Duration
	// Registerer receives the meshca_tokenreview_* metrics (nil: none).
	Registerer prometheus.Registerer
	// Clock is the clock; default the real one.
	Clock clock.PassiveClock
}

// Defaults of TokenReviewOptions.
const (
	DefaultTokenReviewCacheTTL           = 5 * time.Minute
	DefaultTokenReviewNegativeTTL        = 5 * time.Second
	DefaultTokenReviewCacheSize          = 65536
	DefaultTokenReviewNegativeCacheSize  = 4096
	DefaultTokenReviewMaxInFlight        = 32
	DefaultTokenReviewMaxInFlightPerPeer = 2
	DefaultTokenReviewMinWait            = 50 * time.Millisecond
	DefaultTokenReviewTimeout            = 10 * time.Second
)

// TokenReviewer authenticates Kubernetes ServiceAccount tokens with the
// TokenReview API (authentication.k8s.io/v1) of the cluster named by the
// clusterid header, as istiod does. The identity is
// spiffe://<trust domain>/ns/<ns>/sa/<sa>; a pod-bound token also gives
// the pod's name and UID.
//
// Work an unauthenticated caller can cause is bounded before any review:
// a token that is not a JWT of at most MaxServiceAccountTokenSize bytes is
// refused unreviewed (reason malformed_token); at most MaxInFlight reviews
// run at once, at most MaxInFlightPerPeer of them for one caller address,
// and a caller finding no free slot is refused at once (Unavailable)
// rather than queued; a review runs only while some caller waits for it;
// and rejections are cached apart from successes.
//
// Results are cached by SHA-256(cluster, token): a success until
// min(token exp, CacheTTL) or the deletion of its pod or ServiceAccount,
// a rejection for NegativeCacheTTL. Concurrent reviews of the same token
// share one apiserver call. Tokens are never logged, stored or put in
// error messages.
//
// An apiserver that cannot be asked (down, timing out, or refusing meshca
// the create permission on tokenreviews), or no free review slot, gives a
// *Failure with reason review_failed that wraps ErrUnavailable:
// IsUnavailable(err) is true and the transport should answer Unavailable,
// not Unauthenticated.
type TokenReviewer struct {
	clusters    *Clusters
	trustDomain string
	audiences   []string
	ttl         time.Duration
	negTTL      time.Duration
	minWait     time.Duration
	clock       clock.PassiveClock
	cache       *reviewCache
	flights     *reviewFlights
	metrics     *reviewMetrics
}

// NewTokenReviewer returns the TokenReview authenticator.
func NewTokenReviewer(o TokenReviewOptions) (*TokenReviewer, error) {
	if o.Clusters == nil {
		return nil, errors.New("authn: TokenReview needs Clusters")
	}
	if o.TrustDomain == "" {
		return nil, errors.New("authn: TokenReview needs a TrustDomain")
	}
	for name, v := range map[string]int{"CacheSize": o.CacheSize, "NegativeCacheSize": o.NegativeCacheSize, "MaxInFlight": o.MaxInFlight,
		"MaxInFlightPerPeer": o.MaxInFlightPerPeer} {
		if v < 0 {
			return nil, fmt.Errorf("authn: TokenReview %s must not be negative", name)
		}
	}
	a := &TokenReviewer{
		clusters:    o.Clusters,
		trustDomain: o.TrustDomain,
		audiences:   slices.Clone(o.Audiences),
		ttl:         orDefault(o.CacheTTL, DefaultTokenReviewCacheTTL),
		negTTL:      orDefault(o.NegativeCacheTTL, DefaultTokenReviewNegativeTTL),
		minWait:     orDefault(o.MinWait, DefaultTokenReviewMinWait),
		clock:       o.Clock,
		metrics:     newReviewMetrics(o.Registerer),
	}
	if len(a.audiences) == 0 {
		a.audiences = []string{DefaultTokenAudience}
	}
	if slices.Contains(a.audiences, "") {
		return nil, errors.New("authn: TokenReview audiences must not be empty strings")
	}
	if a.clock == nil {
		a.clock = clock.RealClock{}
	}
	size, negSize := cmp.Or(o.CacheSize, DefaultTokenReviewCacheSize), cmp.Or(o.NegativeCacheSize, DefaultTokenReviewNegativeCacheSize)
	if a.ttl < 0 {
		size = 0
	}
	if a.negTTL < 0 {
		negSize = 0
	}
	a.cache = newReviewCache(a.clock, size, negSize, a.ttl)
	a.flights = newReviewFlights(cmp.Or(o.MaxInFlight, DefaultTokenReviewMaxInFlight),
		cmp.Or(o.MaxInFlightPerPeer, DefaultTokenReviewMaxInFlightPerPeer), orDefault(o.Timeout, DefaultTokenReviewTimeout))
	return a, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// Name implements Authenticator.
func (*TokenReviewer) Name() string { return TokenReview }

// Authenticate implements Authenticator. It returns ErrNoCredentials when
// the request has no bearer token.
func (a *TokenReviewer) Authenticate(ctx context.Context, creds Credentials) (*Caller, error) {
	token := creds.BearerToken
	if token == "" {
		return nil, ErrNoCredentials
	}
	cluster, client, ok := a.clusters.Lookup(creds.ClusterID)
	if !ok {
		return nil, fail(TokenReview, ReasonUnknownCluster, fmt.Sprintf("unknown cluster %q", truncate(cluster, 64)))
	}
	if reason := checkTokenSyntax(token); reason != "" {
		a.metrics.rejected.WithLabelValues(reason).Inc()
		msg := "the bearer token is not a ServiceAccount token (a JWT)"
		if reason == PreReviewTooLarge {
			msg = fmt.Sprintf("the bearer token is larger than %d bytes", MaxServiceAccountTokenSize)
		}
		return nil, fail(TokenReview, ReasonMalformedToken, msg)
	}
	key := newReviewKey(cluster, token)
	if r, ok := a.cache.get(key); ok {
		a.metrics.hits.Inc()
		return r.get()
	}
	a.metrics.misses.Inc()
	// A context's deadline is wall-clock time, not the injected clock's.
	if d, ok := ctx.Deadline(); ctx.Err() != nil || (ok && a.minWait > 0 && time.Until(d) < a.minWait) {
		a.metrics.rejected.WithLabelValues(PreReviewDeadline).Inc()
		return nil, &Failure{Authenticator: TokenReview, Reason: ReasonReviewFailed,
			Message: "the request's deadline leaves no time for a TokenReview", Err: ErrUnavailable}
	}

	res, ok, why := a.flights.do(ctx, key, creds.PeerAddr, func(rctx context.Context) reviewResult {
		// A flight for key that ended between this caller's cache miss
		// and now left its answer in the cache: one apiserver call per
		// token, however the callers interleave.
		if r, ok := a.cache.get(key); ok {
			return r
		}
		a.metrics.inFlight.Inc()
		defer a.metrics.inFlight.Dec()
		return a.review(rctx, key, cluster, client, token)
	})
	switch {
	case why != refusedNone:
		a.metrics.rejected.WithLabelValues(string(why)).Inc()
		msg := "every TokenReview slot is in use; retry later"
		if why == refusedPerPeer {
			msg = "this address has the most TokenReviews in flight it may; retry later"
		}
		return nil, &Failure{Authenticator: TokenReview, Reason: ReasonReviewFailed, Message: msg, Err: ErrUnavailable}
	case !ok:
		return nil, &Failure{Authenticator: TokenReview, Reason: ReasonReviewFailed,
			Message: "gave up waiting for the TokenReview of cluster " + cluster + ": " + ctx.Err().Error(), Err: ErrUnavailable}
	}
	return res.get()
}

// ForgetPod ends the cached successes of tokens bound to the pod with uid
// in cluster, e.g. when a pod informer sees the pod deleted.
func (a *TokenReviewer) ForgetPod(cluster, uid string) {
	if uid != "" {
		a.cache.recordDeletion(podDeletionKey(cluster, uid))
	}
}

// ForgetServiceAccount ends the cached successes of the ServiceAccount's
// tokens in cluster, e.g. when an informer sees it deleted.
func (a *TokenReviewer) ForgetServiceAccount(cluster, namespace, name string) {
	a.cache.recordDeletion(serviceAccountDeletionKey(cluster, namespace, name))
}

// review asks the apiserver and caches the outcome.
func (a *TokenReviewer) review(ctx context.Context, key reviewKey, cluster string, client kubernetes.Interface, token string) reviewResult {
	tr := &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: a.audiences}}
	got, err := client.AuthenticationV1().TokenReviews().Create(ctx, tr, metav1.CreateOptions{})
	if err != nil {
		a.metrics.reviews.WithLabelValues(cluster, "error").Inc()
		return reviewResult{fail: &Failure{Authenticator: TokenReview, Reason: ReasonReviewFailed,
			Message: "TokenReview in cluster " + cluster + " failed: " + err.Error(), Err: ErrUnavailable}}
	}
	caller, f := evaluateReview(&got.Status, a.audiences, a.trustDomain, cluster, token)
	if f != nil {
		a.metrics.reviews.WithLabelValues(cluster, "rejected").Inc()
		a.cache.putNegative(key, f, a.negTTL)
		return reviewResult{fail: f}
	}
	a.metrics.reviews.WithLabelValues(cluster, "authenticated").Inc()
	if a.cache.podDeleted(caller) {
		// The apiserver answered from its own cache of recent successes.
		f := fail(TokenReview, ReasonUnauthenticatedToken, "the token's pod was deleted")
		a.cache.putNegative(key, f, a.negTTL)
		return reviewResult{fail: f}
	}
	// The unverified exp only ever shortens the entry: the apiserver has
	// just checked the token, and never accepts it past its exp.
	ttl := a.ttl
	if c, ok := unverifiedClaims(token); ok && c.Expiry != nil {
		ttl = min(ttl, c.Expiry.Time().Sub(a.clock.Now()))
	}
	if _, deleted := a.cache.deletedAt(caller); deleted {
		// Its ServiceAccount was deleted (and maybe re-created) within
		// CacheTTL: the apiserver may have answered from its own cache,
		// so do not keep the answer.
		ttl = 0
	}
	a.cache.putPositive(key, caller, ttl)
	return reviewResult{caller: caller}
}

// evaluateReview turns a TokenReview status into a caller, or a failure.
func evaluateReview(st *authenticationv1.TokenReviewStatus, audiences []string, trustDomain, cluster, token string) (*Caller, *Failure) {
	if !st.Authenticated {
		// The apiserver reports a wrong audience as a plain rejection; the
		// unverified aud claim tells which, for the metrics only.
		if c, ok := unverifiedClaims(token); ok && len(c.Audience) > 0 && !intersects(c.Audience, audiences) {
			return nil, fail(TokenReview, ReasonWrongAudience, "the token is not for audience "+strings.Join(audiences, ","))
		}
		msg := "the apiserver of cluster " + cluster + " did not authenticate the token"
		if st.Error != "" {
			msg += ": " + truncate(st.Error, 256)
		}
		return nil, fail(TokenReview, ReasonUnauthenticatedToken, msg)
	}
	// An empty status.audiences means the apiserver's own audience.
	if !intersects(st.Audiences, audiences) {
		return nil, fail(TokenReview, ReasonWrongAudience,
			fmt.Sprintf("the review confirmed audiences %q, not %q", st.Audiences, audiences))
	}
	ns, sa, ok := serviceAccountOf(st.User.Username)
	if !ok {
		return nil, fail(TokenReview, ReasonNotAServiceAccount,
			fmt.Sprintf("user %q is not a ServiceAccount", truncate(st.User.Username, 128)))
	}
	id, f := serviceAccountIdentity(trustDomain, ns, sa)
	if f != nil {
		return nil, f
	}
	c := &Caller{
		Identity:       id,
		Authenticator:  TokenReview,
		Cluster:        cluster,
		Namespace:      ns,
		ServiceAccount: sa,
		User:           st.User.DeepCopy(),
	}
	if v := st.User.Extra[extraPodName]; len(v) == 1 {
		c.PodName = v[0]
	}
	if v := st.User.Extra[extraPodUID]; len(v) == 1 {
		c.PodUID = v[0]
	}
	return c, nil
}

// serviceAccountOf splits "system:serviceaccount:<ns>:<sa>".
func serviceAccountOf(username string) (ns, sa string, ok bool) {
	rest, ok := strings.CutPrefix(username, serviceAccountPrefix)
	if !ok {
		return "", "", false
	}
	ns, sa, ok = strings.Cut(rest, ":")
	if !ok || len(validation.IsDNS1123Label(ns)) > 0 || len(validation.IsDNS1123Subdomain(sa)) > 0 {
		return "", "", false
	}
	return ns, sa, true
}

// unverifiedClaims reads a JWT's registered claims WITHOUT checking its
// signature. Use them only to bound a cache entry or label a metric.
func unverifiedClaims(token string) (*jose.Claims, bool) {
	if strings.Count(token, ".") != 2 {
		return nil, false
	}
	tok, err := jose.ParseSigned(token)
	if err != nil {
		return nil, false
	}
	var c jose.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&c); err != nil {
		return nil, false
	}
	return &c, true
}

func intersects(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

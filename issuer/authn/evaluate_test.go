package authn

import (
	"testing"

	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
)

// The apiserver cannot be made to authenticate a non-ServiceAccount user for
// audience istio-ca, so the mapping of a review status to a caller is tested
// here as the pure function it is.

func TestEvaluateReview_RejectsAuthenticatedUsersThatAreNotServiceAccounts(t *testing.T) {
	for name, username := range map[string]string{
		"a plain user":                  "alice",
		"a node":                        "system:node:worker-1",
		"a ServiceAccount without name": "system:serviceaccount:default",
		"a ServiceAccount with a slash": "system:serviceaccount:default:a/b",
		"an invalid namespace":          "system:serviceaccount:Default:app",
	} {
		t.Run(name, func(t *testing.T) {
			c, f := evaluateReview(&authenticationv1.TokenReviewStatus{
				Authenticated: true, Audiences: []string{"istio-ca"},
				User: authenticationv1.UserInfo{Username: username},
			}, []string{"istio-ca"}, "cluster.local", "Kubernetes", "opaque-token")
			require.Nil(t, c)
			require.Equal(t, ReasonNotAServiceAccount, f.Reason)
		})
	}
}

func TestEvaluateReview_RejectsReviewThatConfirmsNoneOfOurAudiences(t *testing.T) {
	for name, auds := range map[string][]string{"empty (the apiserver's own)": nil, "another": {"vault"}} {
		t.Run(name, func(t *testing.T) {
			c, f := evaluateReview(&authenticationv1.TokenReviewStatus{
				Authenticated: true, Audiences: auds,
				User: authenticationv1.UserInfo{Username: "system:serviceaccount:default:app"},
			}, []string{"istio-ca"}, "cluster.local", "Kubernetes", "opaque-token")
			require.Nil(t, c)
			require.Equal(t, ReasonWrongAudience, f.Reason)
		})
	}
}

func TestEvaluateReview_MapsServiceAccountAndPodToCaller(t *testing.T) {
	c, f := evaluateReview(&authenticationv1.TokenReviewStatus{
		Authenticated: true, Audiences: []string{"istio-ca"},
		User: authenticationv1.UserInfo{Username: "system:serviceaccount:shop:cart", Extra: map[string]authenticationv1.ExtraValue{
			"authentication.kubernetes.io/pod-name": {"cart-1"}, "authentication.kubernetes.io/pod-uid": {"uid-1"},
		}},
	}, []string{"istio-ca"}, "cluster.local", "remote-1", "opaque-token")
	require.Nil(t, f)
	require.Equal(t, "spiffe://cluster.local/ns/shop/sa/cart", c.Identity.String())
	require.Equal(t, "remote-1", c.Cluster)
	require.Equal(t, "cart-1", c.PodName)
	require.Equal(t, "uid-1", c.PodUID)
}

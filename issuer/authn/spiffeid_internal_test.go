package authn

import (
	"testing"

	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
)

// TestEvaluateReview_BuildsTheIdentityWithTheSPIFFERules: the identity of a
// reviewed ServiceAccount is built by ca/identity, so a trust domain that
// breaks the SPIFFE ID rules (SPIFFE-ID §2.1) yields no identity.
func TestEvaluateReview_BuildsTheIdentityWithTheSPIFFERules(t *testing.T) {
	st := &authenticationv1.TokenReviewStatus{
		Authenticated: true, Audiences: []string{"istio-ca"},
		User: authenticationv1.UserInfo{Username: "system:serviceaccount:default:app"},
	}
	c, f := evaluateReview(st, []string{"istio-ca"}, "cluster.local", "Kubernetes", "opaque-token")
	require.Nil(t, f)
	require.Equal(t, "spiffe://cluster.local/ns/default/sa/app", c.Identity.String())

	for _, td := range []string{"Cluster.local", "cluster.local:443", "a+b"} {
		c, f := evaluateReview(st, []string{"istio-ca"}, td, "Kubernetes", "opaque-token")
		require.Nil(t, c, "trust domain %q gives no identity", td)
		require.Equal(t, ReasonNotAServiceAccount, f.Reason)
	}
}

package impersonation_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"k8s.io/client-go/kubernetes"

	"github.com/meshca/meshca/issuer/authn"
	"github.com/meshca/meshca/issuer/impersonation"
)

// TestImpersonation_IdentityFollowsTheSPIFFESpec: the requested identity is
// parsed by the SPIFFE ID rules (SPIFFE-ID §2), on its text: an upper-case
// scheme, an empty fragment or query, an empty port or an upper-case trust
// domain is malformed, even where the pod it names exists.
func TestImpersonation_IdentityFollowsTheSPIFFESpec(t *testing.T) {
	n := node(t, "spec")
	agent := pod(t, agentNS, "ztunnel-"+n, agentSA, n)
	pod(t, "imp-spec", "web-0", "web", n)
	a := startAuthorizer(t)
	authorizeUntil(t, a, callerOf(agent), workloadID("imp-spec", "web"), "")
	for name, id := range map[string]string{
		"upper-case scheme":       "SPIFFE://cluster.local/ns/imp-spec/sa/web",
		"mixed-case scheme":       "Spiffe://cluster.local/ns/imp-spec/sa/web",
		"empty fragment":          "spiffe://cluster.local/ns/imp-spec/sa/web#",
		"empty query":             "spiffe://cluster.local/ns/imp-spec/sa/web?",
		"empty port":              "spiffe://cluster.local:/ns/imp-spec/sa/web",
		"upper-case trust domain": "spiffe://Cluster.local/ns/imp-spec/sa/web",
	} {
		t.Run(name, func(t *testing.T) {
			requireDenied(t, a, callerOf(agent), id, impersonation.ReasonMalformedIdentity)
		})
	}
}

// TestNew_RefusesAnInvalidTrustDomain: the trust domain is checked by the
// SPIFFE ID rules (SPIFFE-ID §2.1) when the authorizer is built.
func TestNew_RefusesAnInvalidTrustDomain(t *testing.T) {
	clusters := map[string]kubernetes.Interface{authn.DefaultClusterID: env.Client}
	for _, td := range []string{"Cluster.local", "cluster.local:443", "a+b", "spiffe://cluster.local"} {
		_, err := impersonation.New(impersonation.Options{TrustDomain: td, TrustedNodeAccounts: []string{"istio-system/ztunnel"}, Clusters: clusters})
		require.Error(t, err, "trust domain %q must be refused", td)
		require.ErrorContains(t, err, "impersonation: trust domain ")
	}
}

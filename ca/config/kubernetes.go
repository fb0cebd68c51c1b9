package config

import (
	"net/url"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// DefaultClusterID is Istio's default ISTIO_META_CLUSTER_ID.
const DefaultClusterID = "Kubernetes"

// KubernetesConfig says how meshca reaches the cluster(s) it serves.
// Without a kubeconfig and outside a cluster meshca runs with no cluster:
// client-certificate authentication only, no trust distribution.
type KubernetesConfig struct {
	// Kubeconfig is a kubeconfig file for the local cluster.
	Kubeconfig string `json:"kubeconfig,omitempty"`
	// InCluster uses the pod's ServiceAccount instead of a kubeconfig.
	InCluster bool `json:"inCluster,omitempty"`
	// ClusterID is the local cluster's name as proxies send it in the
	// clusterid header (Istio's ISTIO_META_CLUSTER_ID).
	ClusterID string `json:"clusterID"`
	// RemoteClusters maps other clusters' IDs to kubeconfig files, used to
	// review tokens of proxies in those clusters.
	RemoteClusters map[string]string `json:"remoteClusters,omitempty"`
}

// Configured reports whether meshca talks to a cluster.
func (k KubernetesConfig) Configured() bool { return k.Kubeconfig != "" || k.InCluster }

// AuthenticationConfig configures how the Istio endpoint authenticates.
// Client certificates issued by meshca are always accepted first.
type AuthenticationConfig struct {
	TokenReview   TokenReviewConfig   `json:"tokenReview"`
	JWT           *JWTConfig          `json:"jwt,omitempty"`
	Impersonation ImpersonationConfig `json:"impersonation"`
	// CertSigners are the named signers a request may select with Istio's
	// CertSigner metadata. Empty: CertSigner is ignored (every request gets
	// the default signer).
	CertSigners []CertSignerConfig `json:"certSigners,omitempty"`
}

// TokenReviewConfig configures Kubernetes TokenReview (when a cluster is configured).
type TokenReviewConfig struct {
	// Audiences the token must carry (Istio's is istio-ca).
	Audiences []string `json:"audiences"`
	// CacheTTL bounds how long a successful review is reused (never past the token's exp).
	CacheTTL Duration `json:"cacheTTL"`
}

// JWTConfig configures an OIDC/JWKS issuer whose tokens are accepted.
type JWTConfig struct {
	Issuer    string   `json:"issuer"`
	Audiences []string `json:"audiences"`
	// JWKSURL (https) or JWKSFile supplies the issuer's keys.
	JWKSURL  string `json:"jwksURL,omitempty"`
	JWKSFile string `json:"jwksFile,omitempty"`
	// IdentityTemplate maps claims to a SPIFFE ID, e.g.
	// spiffe://{{.TrustDomain}}/ns/{{.Claims.namespace}}/sa/{{.Claims.sub}}
	// Whoever can set these claims at the issuer can obtain any identity
	// the template gives: confine it with AllowedNamespaces.
	IdentityTemplate string `json:"identityTemplate,omitempty"`
	// AllowedNamespaces, when set, is the only namespaces the issuer's
	// tokens may map to (the identity must be .../ns/<ns>/sa/<sa>); other
	// tokens are refused (Unauthenticated, reason namespace_not_allowed).
	AllowedNamespaces []string `json:"allowedNamespaces,omitempty"`
}

// ImpersonationConfig configures ztunnel's ImpersonatedIdentity.
type ImpersonationConfig struct {
	// TrustedNodeAccounts ("namespace/serviceaccount") may request
	// certificates for pods on their own node. Empty disables impersonation.
	TrustedNodeAccounts []string `json:"trustedNodeAccounts"`
}

func (k *KubernetesConfig) init() {
	if k.ClusterID == "" {
		k.ClusterID = DefaultClusterID
	}
}

func (a *AuthenticationConfig) init() {
	if a.TokenReview.Audiences == nil {
		a.TokenReview.Audiences = []string{"istio-ca"}
	}
	if a.TokenReview.CacheTTL.Duration == 0 {
		a.TokenReview.CacheTTL.Duration = 5 * time.Minute
	}
	if a.Impersonation.TrustedNodeAccounts == nil {
		a.Impersonation.TrustedNodeAccounts = []string{"istio-system/ztunnel"}
	}
}

func (k KubernetesConfig) validate(add func(string, string, ...any)) {
	if k.Kubeconfig != "" && k.InCluster {
		add("kubernetes", "set kubeconfig or inCluster, not both")
	}
	for id, path := range k.RemoteClusters {
		if path == "" {
			add("kubernetes.remoteClusters."+id, "needs a kubeconfig path")
		}
		if id == k.ClusterID {
			add("kubernetes.remoteClusters."+id, "is the local clusterID %q", k.ClusterID)
		}
	}
}

func (a AuthenticationConfig) validate(add func(string, string, ...any)) {
	if len(a.TokenReview.Audiences) == 0 {
		add("authentication.tokenReview.audiences", "must list at least one audience (Istio's is istio-ca)")
	}
	for _, acct := range a.Impersonation.TrustedNodeAccounts {
		if ns, sa, ok := strings.Cut(acct, "/"); !ok || ns == "" || sa == "" {
			add("authentication.impersonation.trustedNodeAccounts", "%q is not namespace/serviceaccount (e.g. istio-system/ztunnel)", acct)
		}
	}
	if j := a.JWT; j != nil {
		if u, err := url.Parse(j.Issuer); err != nil || u.Scheme == "" {
			add("authentication.jwt.issuer", "%q is not an issuer URL", j.Issuer)
		}
		if len(j.Audiences) == 0 {
			add("authentication.jwt.audiences", "must list at least one audience")
		}
		if (j.JWKSURL == "") == (j.JWKSFile == "") {
			add("authentication.jwt", "set exactly one of jwksURL and jwksFile")
		}
		for _, ns := range j.AllowedNamespaces {
			if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
				add("authentication.jwt.allowedNamespaces", "%q is not a Kubernetes namespace name: %s", ns, strings.Join(errs, "; "))
			}
		}
	}
}

package istio_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshca/meshca/issuer/authn"
	"github.com/meshca/meshca/issuer/impersonation"
	"github.com/meshca/meshca/test/kubeenv"
)

var kube *kubeenv.Env

func TestMain(m *testing.M) { os.Exit(kubeenv.RunMain(m, &kube)) }

// kubeEnv is the endpoint wired as meshca serve wires it with a cluster:
// client certificate, then TokenReview (local "Kubernetes" and a second
// cluster "remote-1"), and ztunnel impersonation.
func kubeEnv(t *testing.T) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	clusters, err := authn.NewClusters("Kubernetes", kube.Client, map[string]kubernetes.Interface{"remote-1": kube.Client})
	require.NoError(t, err)
	tr, err := authn.NewTokenReviewer(authn.TokenReviewOptions{Clusters: clusters, TrustDomain: trustDomain})
	require.NoError(t, err)
	imp, err := impersonation.New(impersonation.Options{
		TrustDomain: trustDomain, TrustedNodeAccounts: []string{"istio-system/ztunnel"}, Clusters: clusters.Clients(),
	})
	require.NoError(t, err)
	require.NoError(t, imp.Start(ctx))
	t.Cleanup(imp.Stop)
	var e *env
	lazy := &lazyChain{}
	e = newEnv(t, envOptions{authn: lazy, impersonator: imp, unavailable: authn.IsUnavailable})
	lazy.chain = authn.Chain{&authn.ClientCert{Trust: e.rt.Authority, Records: e.rt.Store, TrustDomain: trustDomain}, tr}
	return e
}

// lazyChain lets the client-certificate authenticator use the env's own CA.
type lazyChain struct{ chain authn.Chain }

func (l *lazyChain) Authenticate(ctx context.Context, c authn.Credentials) (*authn.Caller, error) {
	return l.chain.Authenticate(ctx, c)
}

func token(t *testing.T, ns, sa string, aud ...string) string {
	t.Helper()
	if len(aud) == 0 {
		aud = []string{"istio-ca"}
	}
	tok, err := kube.MintToken(context.Background(), ns, sa, aud, time.Hour)
	require.NoError(t, err)
	return tok
}

func TestKubernetes_RealTokenIssuesForBothCSRShapes(t *testing.T) {
	e := kubeEnv(t)
	require.NoError(t, kube.CreateNamespace(context.Background(), "shop"))
	c := e.dial(t, nil)
	id := spiffeID("shop", "cart")
	for name, csr := range map[string][]byte{"ztunnel": first(ztunnelCSR(t, id)), "istio-agent": first(agentCSR(t, id))} {
		t.Run(name, func(t *testing.T) {
			ctx := withToken(context.Background(), token(t, "shop", "cart"), "Kubernetes")
			resp, err := c.CreateCertificate(ctx, request(t, csr, 0, nil))
			require.NoError(t, err)
			leaf, roots := parseAsIstioAgent(t, resp.CertChain)
			require.Len(t, parseAsZtunnel(t, resp.CertChain), 1)
			require.Equal(t, id, leaf.URIs[0].String())
			require.Len(t, roots, 1)
			require.Equal(t, 24*time.Hour+2*time.Minute, leaf.NotAfter.Sub(leaf.NotBefore))
		})
	}
	require.Contains(t, e.auditLog(), `"requester":"istio:token_review:`+id+`@Kubernetes"`)
}

func first[A, B any](a A, _ B) A { return a }

// expiredJWT is a structurally valid, expired token (signature irrelevant:
// the apiserver rejects it).
func expiredJWT() string {
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","kid":"x"}`))
	claims, _ := json.Marshal(map[string]any{"iss": "https://kubernetes.default.svc", "aud": []string{"istio-ca"},
		"sub": "system:serviceaccount:shop:cart", "exp": time.Now().Add(-time.Hour).Unix()})
	return h + "." + base64.RawURLEncoding.EncodeToString(claims) + "." + base64.RawURLEncoding.EncodeToString([]byte("sig"))
}

func TestKubernetes_AttacksAreRefusedWithExactCodeAuditedAndWriteNothing(t *testing.T) {
	ctx := context.Background()
	e := kubeEnv(t)
	for _, ns := range []string{"shop", "istio-system", "bank"} {
		require.NoError(t, kube.CreateNamespace(ctx, ns))
	}
	kube.Node(t, "node-a")
	kube.Node(t, "node-b")
	ztunnelA := kube.Pod(t, "istio-system", "ztunnel-a", "ztunnel", "node-a")
	kube.Pod(t, "shop", "cart-1", "cart", "node-a")
	kube.Pod(t, "bank", "vault-1", "teller", "node-b")
	intruder := kube.Pod(t, "shop", "intruder", "intruder", "node-a")
	podToken := func(t *testing.T, p any) string {
		tok, err := kube.MintPodToken(ctx, ztunnelA, []string{"istio-ca"}, time.Hour)
		if p != nil {
			tok, err = kube.MintPodToken(ctx, intruder, []string{"istio-ca"}, time.Hour)
		}
		require.NoError(t, err)
		return tok
	}
	deletedSAToken := token(t, "shop", "ghost")
	require.NoError(t, kube.Client.CoreV1().ServiceAccounts("shop").Delete(ctx, "ghost", metav1.DeleteOptions{}))

	type tc struct {
		token, cluster string
		csrID          string
		impersonate    string
		code           codes.Code
		audit          string
	}
	cartID := spiffeID("shop", "cart")
	cases := map[string]tc{
		"token with the wrong audience":              {token: token(t, "shop", "cart", "vault"), csrID: cartID, code: codes.Unauthenticated, audit: `"reason":"authn_wrong_audience"`},
		"expired token":                              {token: expiredJWT(), csrID: cartID, code: codes.Unauthenticated, audit: `"reason":"authn_unauthenticated_token"`},
		"token of a deleted ServiceAccount":          {token: deletedSAToken, csrID: spiffeID("shop", "ghost"), code: codes.Unauthenticated, audit: `"reason":"authn_unauthenticated_token"`},
		"clusterid of an unknown cluster":            {token: token(t, "shop", "cart"), cluster: "mars", csrID: cartID, code: codes.Unauthenticated, audit: `"reason":"authn_unknown_cluster"`},
		"ImpersonatedIdentity from a non-trusted SA": {token: podToken(t, "intruder"), csrID: cartID, impersonate: cartID, code: codes.PermissionDenied, audit: `"reason":"impersonation_untrusted_caller"`},
		"trusted SA impersonating an SA with no pod on its node": {token: podToken(t, nil), csrID: spiffeID("bank", "teller"),
			impersonate: spiffeID("bank", "teller"), code: codes.PermissionDenied, audit: `"reason":"impersonation_no_pod_on_node"`},
		"impersonating a foreign trust domain": {token: podToken(t, nil), csrID: "spiffe://evil.example/ns/shop/sa/cart",
			impersonate: "spiffe://evil.example/ns/shop/sa/cart", code: codes.PermissionDenied, audit: `"reason":"impersonation_foreign_trust_domain"`},
	}
	c := e.dial(t, nil)
	for name, k := range cases {
		t.Run(name, func(t *testing.T) {
			before := e.records(t)
			csr, _ := ztunnelCSR(t, k.csrID)
			var meta map[string]any
			if k.impersonate != "" {
				meta = map[string]any{"CertSigner": "", "ImpersonatedIdentity": k.impersonate}
			}
			resp, err := c.CreateCertificate(withToken(ctx, k.token, k.cluster), request(t, csr, 0, meta))
			require.Nil(t, resp)
			require.Equal(t, k.code, status.Code(err), "%v", err)
			if k.code == codes.Unauthenticated {
				require.Equal(t, "request authenticate failure", status.Convert(err).Message(), "authentication failures are opaque")
			}
			require.Equal(t, before, e.records(t))
			require.Contains(t, e.auditLog(), k.audit)
		})
	}

	t.Run("trusted ztunnel impersonating a pod on its own node succeeds", func(t *testing.T) {
		csr, _ := ztunnelCSR(t, cartID)
		resp, err := c.CreateCertificate(withToken(ctx, podToken(t, nil), ""), request(t, csr, 0,
			map[string]any{"CertSigner": "", "ImpersonatedIdentity": cartID}))
		require.NoError(t, err)
		leaf, _ := parseAsIstioAgent(t, resp.CertChain)
		require.Equal(t, cartID, leaf.URIs[0].String())
		require.True(t, strings.Contains(e.auditLog(), `for `+cartID))
	})

	t.Run("second cluster selected by clusterid", func(t *testing.T) {
		csr, _ := ztunnelCSR(t, cartID)
		_, err := c.CreateCertificate(withToken(ctx, token(t, "shop", "cart"), "remote-1"), request(t, csr, 0, nil))
		require.NoError(t, err)
		require.Contains(t, e.auditLog(), `@remote-1"`)
	})
}

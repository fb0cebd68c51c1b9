package vault

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/require"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/test/kubeenv"
)

// Vault's Kubernetes auth method reviews meshca's ServiceAccount token
// against a real kube-apiserver (TokenReview), with a reviewer
// ServiceAccount bound to system:auth-delegator.
func TestKubernetesAuth_LogsInWithServiceAccountTokenReviewedByRealAPIServer(t *testing.T) {
	kube, err := kubeenv.Start(kubeenv.WithoutDefaultCRDs())
	require.NoError(t, err)
	t.Cleanup(kube.Stop)
	ctx := testCtx(t)
	const ns = "istio-system"

	// The reviewer Vault uses to call TokenReview.
	_, err = kube.EnsureServiceAccount(ctx, ns, "vault-reviewer")
	require.NoError(t, err)
	_, err = kube.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "vault-reviewer-auth-delegator"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:auth-delegator"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: "vault-reviewer"}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	reviewer, err := kube.MintToken(ctx, ns, "vault-reviewer", nil, time.Hour)
	require.NoError(t, err)

	p := newPKI(t, "kube")
	c := vaultEnv.Client
	mount := "kubernetes-" + strings.TrimPrefix(p.mount, "pki-")
	require.NoError(t, c.Sys().EnableAuthWithOptionsWithContext(ctx, mount, &vaultapi.EnableAuthOptions{Type: "kubernetes"}))
	_, err = c.Logical().WriteWithContext(ctx, "auth/"+mount+"/config", map[string]any{
		"kubernetes_host":      kube.Config.Host,
		"kubernetes_ca_cert":   string(kube.Config.CAData),
		"token_reviewer_jwt":   reviewer,
		"disable_local_ca_jwt": true,
	})
	require.NoError(t, err)
	_, err = c.Logical().WriteWithContext(ctx, "auth/"+mount+"/role/meshca", map[string]any{
		"bound_service_account_names":      []string{"meshca"},
		"bound_service_account_namespaces": []string{ns},
		"audience":                         "vault",
		"token_policies":                   []string{p.policy},
		"token_no_default_policy":          true,
		"token_ttl":                        "1h",
	})
	require.NoError(t, err)

	// meshca's projected token, audience "vault".
	jwt, err := kube.MintToken(ctx, ns, "meshca", []string{"vault"}, 10*time.Minute)
	require.NoError(t, err)
	jwtFile := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(jwtFile, []byte(jwt), 0o600))

	cfg := p.config()
	cfg.Auth = config.VaultAuthConfig{Method: config.VaultAuthKubernetes, Role: "meshca", ServiceAccountTokenFile: jwtFile}
	cfg.Init()
	require.Equal(t, "kubernetes", cfg.Auth.Mount, "the default mount")
	cfg.Auth.Mount = mount
	src, _ := newSource(t, cfg)
	self, err := src.api.Auth().Token().LookupSelfWithContext(ctx)
	require.NoError(t, err)
	require.Equal(t, "istio-system", self.Data["meta"].(map[string]any)["service_account_namespace"])
	require.Equal(t, "meshca", self.Data["meta"].(map[string]any)["service_account_name"])

	km, _ := newKeys(t)
	b, _, _, err := mintGeneration(ctx, src, km, keys.ECP256, tmpl, time.Now())
	require.NoError(t, err)
	require.NoError(t, b.Cert.CheckSignatureFrom(p.root))

	// A token of another ServiceAccount is refused, naming the method.
	other, err := kube.MintToken(ctx, ns, "someone-else", []string{"vault"}, 10*time.Minute)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(jwtFile, []byte(other), 0o600))
	_, err = New(ctx, cfg, WithLogger(quietLog()))
	require.ErrorContains(t, err, "root.vault.auth: kubernetes login at auth/"+mount+"/login was refused")
}

package vault

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/keys"
)

// Each bad setup fails New with an error that names the problem, and
// nothing is written: Vault has issued nothing but its root.
func TestNew_BadSetupFailsWithErrorNamingTheProblemAndWritesNothing(t *testing.T) {
	p := newPKI(t, "bad")
	ctx := testCtx(t)

	// A role whose policy has everything but sign-intermediate.
	hcl, err := os.ReadFile(filepath.Join("..", "..", "..", "deploy", "examples", "vault-policy.hcl"))
	require.NoError(t, err)
	readOnly := strings.ReplaceAll(strings.ReplaceAll(string(hcl), `"pki/root/sign-intermediate"`, `"pki/not-sign-intermediate"`), `"pki/`, `"`+p.mount+"/")
	require.NoError(t, vaultEnv.Client.Sys().PutPolicyWithContext(ctx, p.policy+"-read", readOnly))
	readOnlyRole := *p
	readOnlyRole.addRole(t, p.role+"-read", map[string]any{"token_policies": []string{p.policy + "-read"}})

	// A PKI mount without any issuer.
	empty := p.mount + "-empty"
	require.NoError(t, vaultEnv.Client.Sys().MountWithContext(ctx, empty, &vaultapi.MountInput{Type: "pki"}))

	for name, tc := range map[string]struct {
		cfg  func() config.VaultConfig
		want string
	}{
		"wrong mount": {func() config.VaultConfig {
			c := p.config()
			c.Mount = "pki-does-not-exist"
			return c
		}, `root.vault.mount: no PKI secrets engine is mounted at "pki-does-not-exist"`},
		"mount without a root": {func() config.VaultConfig {
			c := p.config()
			c.Mount = empty
			return c
		}, `root.vault.mount: the PKI engine at "` + empty + `" has no default issuer`},
		"unknown issuer ref": {func() config.VaultConfig {
			c := p.config()
			c.IssuerRef = "no-such-issuer"
			return c
		}, `root.vault.issuerRef: the PKI engine at "` + p.mount + `" has no issuer "no-such-issuer"`},
		"role without sign-intermediate": {readOnlyRole.config,
			"root.vault.auth: the Vault token (approle login) may not call " + p.mount + "/root/sign-intermediate"},
		"root not matching the expected fingerprint": {func() config.VaultConfig {
			c := p.config()
			c.ExpectedRootFingerprint = strings.Repeat("ab", 32)
			return c
		}, "root.vault.expectedRootFingerprint: the root of Vault mount \"" + p.mount + "\" is \"" + p.root.Subject.String() + "\" with SHA-256 " + Fingerprint(p.root) + ", not the expected abab"},
		"wrong auth mount": {func() config.VaultConfig {
			c := p.config()
			c.Auth.Mount = "approle-nope"
			return c
		}, "approle-nope"},
		"nothing listens at the address": {func() config.VaultConfig {
			c := p.config()
			c.Address = "http://" + closedPort(t)
			return c
		}, "root.vault.address: cannot use Vault at http://127.0.0.1:"},
		"invalid configuration": {func() config.VaultConfig {
			c := p.config()
			c.Address = "http://vault.example.com:8200"
			return c
		}, "root.vault.address: \"http://vault.example.com:8200\" uses plain http to a remote host"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := New(testCtx(t), tc.cfg(), WithLogger(quietLog()))
			require.ErrorContains(t, err, tc.want)
			require.Equal(t, name == "nothing listens at the address", errors.Is(err, ErrUnavailable), "only an outage is ErrUnavailable")
		})
	}
	certs, err := vaultEnv.Client.Logical().ListWithContext(ctx, p.mount+"/certs")
	require.NoError(t, err)
	require.Equal(t, []any{serialColons(p.root)}, certs.Data["keys"])
}

func TestIssuerRef_SignsThroughTheNamedIssuerOfAMultiIssuerMount(t *testing.T) {
	ctx := testCtx(t)
	p := newPKI(t, "multi")
	// A second root on the same mount becomes the default issuer; meshca
	// is pinned to the first one by name.
	_, err := vaultEnv.Client.Logical().WriteWithContext(ctx, p.mount+"/issuer/"+issuerID(t, p)+"", map[string]any{"issuer_name": "enterprise"})
	require.NoError(t, err)
	_, err = vaultEnv.Client.Logical().WriteWithContext(ctx, p.mount+"/root/generate/internal", map[string]any{
		"common_name": "Other Root", "key_type": "ec", "key_bits": 256, "ttl": "8760h", "issuer_name": "other",
	})
	require.NoError(t, err)
	_, err = vaultEnv.Client.Logical().WriteWithContext(ctx, p.mount+"/config/issuers", map[string]any{"default": "other"})
	require.NoError(t, err)
	require.NoError(t, vaultEnv.Client.Sys().PutPolicyWithContext(ctx, p.policy+"-issuer", `
path "`+p.mount+`/issuer/enterprise/sign-intermediate" { capabilities = ["update"] }
path "sys/capabilities-self" { capabilities = ["update"] }
`))
	p.addRole(t, p.role+"-issuer", map[string]any{"token_policies": []string{p.policy + "-issuer"}})
	cfg := p.config()
	cfg.IssuerRef = "enterprise"
	src, _ := newSource(t, cfg)
	km, _ := newKeys(t)

	b, _, _, err := mintGeneration(ctx, src, km, keys.ECP256, tmpl, time.Now())
	require.NoError(t, err)
	require.NoError(t, b.Cert.CheckSignatureFrom(p.root))
	require.True(t, b.Roots[0].Equal(p.root))
	require.NoError(t, src.CurrentCRL().CheckSignatureFrom(p.root))
}

func issuerID(t *testing.T, p *pki) string {
	t.Helper()
	list, err := vaultEnv.Client.Logical().ListWithContext(testCtx(t), p.mount+"/issuers")
	require.NoError(t, err)
	ids := list.Data["keys"].([]any)
	require.Len(t, ids, 1)
	return ids[0].(string)
}

// closedPort returns a loopback address on which nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

package config_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/meshca/meshca/ca/config"
)

func validateVault(v config.VaultConfig) []string {
	var errs []string
	v.Validate(func(key, format string, args ...any) {
		errs = append(errs, key+": "+fmt.Sprintf(format, args...))
	})
	return errs
}

func TestVaultConfig_InitFillsDefaultsPerAuthMethod(t *testing.T) {
	v := config.VaultConfig{Address: "https://vault:8200", Mount: "/pki-mesh/", Auth: config.VaultAuthConfig{Method: "kubernetes", Role: "meshca"}}
	v.Init()
	require.Equal(t, "pki-mesh", v.Mount)
	require.Equal(t, "kubernetes", v.Auth.Mount)
	require.Equal(t, config.DefaultVaultServiceAccountTokenFile, v.Auth.ServiceAccountTokenFile)
	require.Equal(t, 10*time.Second, v.RequestTimeout.Duration)
	require.Equal(t, 30*time.Second, v.HealthInterval.Duration)
	require.Equal(t, time.Second, v.InitialBackoff.Duration)
	require.Equal(t, 5*time.Minute, v.MaxBackoff.Duration)
	require.Equal(t, time.Hour, v.CRLRefreshInterval.Duration)
	require.Equal(t, 10*time.Minute, v.LifetimeTolerance.Duration)
	require.Empty(t, validateVault(v))

	var empty config.VaultConfig
	empty.Init()
	require.Equal(t, "pki", empty.Mount)
	require.Empty(t, empty.Auth.Mount, "no auth mount default without a method")
}

func TestVaultConfig_ValidateNamesEachBadKey(t *testing.T) {
	good := func() config.VaultConfig {
		v := config.VaultConfig{Address: "https://vault.vault.svc:8200",
			Auth: config.VaultAuthConfig{Method: "approle", RoleID: "r", SecretIDFile: "/s"}}
		v.Init()
		return v
	}
	require.Empty(t, validateVault(good()))
	for name, tc := range map[string]struct {
		modify func(v *config.VaultConfig)
		want   string
	}{
		"no address":                {func(v *config.VaultConfig) { v.Address = "" }, "root.vault.address: must be set"},
		"not a URL":                 {func(v *config.VaultConfig) { v.Address = "vault:8200" }, "root.vault.address: \"vault:8200\" is not an http(s) URL"},
		"plain http to a remote":    {func(v *config.VaultConfig) { v.Address = "http://vault:8200" }, "uses plain http to a remote host"},
		"bad mount":                 {func(v *config.VaultConfig) { v.Mount = "pki mesh" }, "root.vault.mount: \"pki mesh\" is not a Vault mount path"},
		"bad issuerRef":             {func(v *config.VaultConfig) { v.IssuerRef = "a/b" }, "root.vault.issuerRef: \"a/b\" is not an issuer name or ID"},
		"bad fingerprint":           {func(v *config.VaultConfig) { v.ExpectedRootFingerprint = "abc" }, "root.vault.expectedRootFingerprint: \"abc\" is not a SHA-256 fingerprint"},
		"no method":                 {func(v *config.VaultConfig) { v.Auth.Method = "" }, "root.vault.auth.method: must be set to token, approle or kubernetes"},
		"unknown method":            {func(v *config.VaultConfig) { v.Auth.Method = "ldap" }, "root.vault.auth.method: \"ldap\" is not supported"},
		"approle without secret":    {func(v *config.VaultConfig) { v.Auth.SecretIDFile = "" }, "root.vault.auth.secretIDFile: must be set"},
		"approle with two role ids": {func(v *config.VaultConfig) { v.Auth.RoleIDFile = "/r" }, "root.vault.auth.roleID: set exactly one of roleID and roleIDFile"},
		"kubernetes without role": {func(v *config.VaultConfig) { v.Auth = config.VaultAuthConfig{Method: "kubernetes"} },
			"root.vault.auth.role: must be set"},
		"backoff cap below start": {func(v *config.VaultConfig) { v.MaxBackoff.Duration = time.Millisecond }, "root.vault.maxBackoff: 1ms is below initialBackoff 1s"},
		"negative timeout":        {func(v *config.VaultConfig) { v.RequestTimeout.Duration = -1 }, "root.vault.requestTimeout: must be positive"},
	} {
		t.Run(name, func(t *testing.T) {
			v := good()
			tc.modify(&v)
			errs := validateVault(v)
			require.NotEmpty(t, errs)
			require.Contains(t, strings.Join(errs, "\n"), tc.want)
		})
	}
}

func TestVaultConfig_AcceptsLoopbackHTTPAndColonFingerprint(t *testing.T) {
	v := config.VaultConfig{Address: "http://127.0.0.1:8200", Auth: config.VaultAuthConfig{Method: "token"},
		ExpectedRootFingerprint: strings.Repeat("AB:", 31) + "AB"}
	v.Init()
	require.Empty(t, validateVault(v))
	require.Equal(t, strings.Repeat("ab", 32), config.NormalizeFingerprint(v.ExpectedRootFingerprint))
	require.Len(t, v.Paths(), 5)
}

// vaultExample is the root.vault section shown in the README; it must
// parse strictly and validate.
const vaultExample = `
address: https://vault.vault.svc:8200
namespace: ""                  # Vault Enterprise namespace, e.g. team-a
mount: pki                     # the PKI secrets engine that holds the root
# issuerRef: enterprise-root   # a named issuer of a multi-issuer mount
expectedRootFingerprint: ""    # optional pin: openssl x509 -in root.pem -noout -fingerprint -sha256
tls:
  caCert: /etc/meshca/vault/ca.pem
  serverName: ""               # when it differs from the host in address
auth:
  method: kubernetes           # token, approle or kubernetes
  role: meshca
  serviceAccountTokenFile: /var/run/secrets/vault/token
  # method: approle
  # roleID: 2f0e...            # or roleIDFile
  # secretIDFile: /etc/meshca/vault/secret-id
  # method: token
  # tokenFile: /etc/meshca/vault/token   # or the VAULT_TOKEN environment variable
requestTimeout: 10s
healthInterval: 30s
initialBackoff: 1s
maxBackoff: 5m
crlRefreshInterval: 1h
lifetimeTolerance: 10m
`

func TestVaultConfig_READMEExampleParsesStrictlyAndValidates(t *testing.T) {
	var v config.VaultConfig
	require.NoError(t, yaml.UnmarshalStrict([]byte(vaultExample), &v))
	v.Init()
	require.Empty(t, validateVault(v))
	require.Equal(t, "kubernetes", v.Auth.Mount)
	require.Equal(t, 5*time.Minute, v.MaxBackoff.Duration)
}

package config

import (
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Vault root source defaults.
const (
	DefaultVaultMount              = "pki"
	DefaultVaultRequestTimeout     = 10 * time.Second
	DefaultVaultHealthInterval     = 30 * time.Second
	DefaultVaultInitialBackoff     = time.Second
	DefaultVaultMaxBackoff         = 5 * time.Minute
	DefaultVaultCRLRefreshInterval = time.Hour
	DefaultVaultLifetimeTolerance  = 10 * time.Minute
	// DefaultVaultServiceAccountTokenFile is where Kubernetes mounts a pod's
	// ServiceAccount token.
	DefaultVaultServiceAccountTokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"
)

// Vault authentication methods.
const (
	VaultAuthToken      = "token"
	VaultAuthAppRole    = "approle"
	VaultAuthKubernetes = "kubernetes"
)

// VaultConfig configures the Vault PKI root source (root.source: vault):
// Vault's PKI secrets engine holds the enterprise root and signs meshca's
// intermediate from a CSR; the intermediate's key stays in meshca's key
// store.
type VaultConfig struct {
	// Address is Vault's URL, e.g. https://vault.vault.svc:8200. Plain
	// http is accepted only for a loopback address (a local Vault agent).
	Address string `json:"address"`
	// Namespace is the Vault Enterprise namespace, sent as
	// X-Vault-Namespace on every request. Empty means the root namespace.
	Namespace string `json:"namespace,omitempty"`
	// Mount is the path of the PKI secrets engine that holds the root.
	Mount string `json:"mount"`
	// IssuerRef selects an issuer (name or ID) on a multi-issuer mount;
	// empty means the mount's default issuer.
	IssuerRef string `json:"issuerRef,omitempty"`
	// ExpectedRootFingerprint pins Vault's root: the hex SHA-256 of its DER
	// (colons allowed, e.g. from openssl x509 -fingerprint -sha256).
	// meshca refuses to start, and never signs, when Vault's root differs.
	ExpectedRootFingerprint string `json:"expectedRootFingerprint,omitempty"`
	// TLS configures the connection to Vault.
	TLS VaultTLSConfig `json:"tls"`
	// Auth says how meshca logs in to Vault.
	Auth VaultAuthConfig `json:"auth"`
	// RequestTimeout bounds every call to Vault.
	RequestTimeout Duration `json:"requestTimeout"`
	// HealthInterval is how often meshca checks Vault while it is up.
	HealthInterval Duration `json:"healthInterval"`
	// InitialBackoff and MaxBackoff bound the retry delay while Vault is
	// down: it doubles from InitialBackoff up to MaxBackoff, with jitter.
	InitialBackoff Duration `json:"initialBackoff"`
	MaxBackoff     Duration `json:"maxBackoff"`
	// CRLRefreshInterval is how often the root's CRL is fetched; it is
	// fetched sooner when the CRL's nextUpdate is nearer.
	CRLRefreshInterval Duration `json:"crlRefreshInterval"`
	// LifetimeTolerance is how much shorter than intermediate.lifetime the
	// intermediate signed by Vault may be (Vault silently caps the TTL at
	// the mount's max_lease_ttl). A lifetime cut at the root's own expiry
	// is always accepted.
	LifetimeTolerance Duration `json:"lifetimeTolerance"`
}

// VaultTLSConfig configures TLS to Vault.
type VaultTLSConfig struct {
	// CACert is a PEM bundle of the CAs that issued Vault's serving
	// certificate; empty means the system roots.
	CACert string `json:"caCert,omitempty"`
	// ServerName is the name to verify Vault's certificate against (and
	// send as SNI) when it differs from the host in Address.
	ServerName string `json:"serverName,omitempty"`
}

// VaultAuthConfig configures the Vault login. Secrets are read from files
// (never from the configuration itself) and re-read at every login, so
// that rotated credentials are picked up.
type VaultAuthConfig struct {
	// Method is token, approle or kubernetes.
	Method string `json:"method"`
	// Mount is the auth method's path; it defaults to the method's name.
	Mount string `json:"mount,omitempty"`
	// TokenFile holds a Vault token (method token). Empty means the
	// VAULT_TOKEN environment variable.
	TokenFile string `json:"tokenFile,omitempty"`
	// RoleID is the AppRole role_id (not a secret); or use RoleIDFile.
	RoleID     string `json:"roleID,omitempty"`
	RoleIDFile string `json:"roleIDFile,omitempty"`
	// SecretIDFile holds the AppRole secret_id.
	SecretIDFile string `json:"secretIDFile,omitempty"`
	// Role is the Kubernetes auth role.
	Role string `json:"role,omitempty"`
	// ServiceAccountTokenFile is the (projected) ServiceAccount token that
	// the Kubernetes auth method reviews.
	ServiceAccountTokenFile string `json:"serviceAccountTokenFile,omitempty"`
}

// Init fills every unset value with its default.
func (v *VaultConfig) Init() {
	v.Mount = strings.Trim(v.Mount, "/")
	if v.Mount == "" {
		v.Mount = DefaultVaultMount
	}
	v.Namespace = strings.Trim(v.Namespace, "/")
	v.Auth.Mount = strings.Trim(v.Auth.Mount, "/")
	if v.Auth.Mount == "" && (v.Auth.Method == VaultAuthAppRole || v.Auth.Method == VaultAuthKubernetes) {
		v.Auth.Mount = v.Auth.Method
	}
	if v.Auth.Method == VaultAuthKubernetes && v.Auth.ServiceAccountTokenFile == "" {
		v.Auth.ServiceAccountTokenFile = DefaultVaultServiceAccountTokenFile
	}
	for _, d := range []struct {
		p   *Duration
		def time.Duration
	}{
		{&v.RequestTimeout, DefaultVaultRequestTimeout},
		{&v.HealthInterval, DefaultVaultHealthInterval},
		{&v.InitialBackoff, DefaultVaultInitialBackoff},
		{&v.MaxBackoff, DefaultVaultMaxBackoff},
		{&v.CRLRefreshInterval, DefaultVaultCRLRefreshInterval},
		{&v.LifetimeTolerance, DefaultVaultLifetimeTolerance},
	} {
		if d.p.Duration == 0 {
			d.p.Duration = d.def
		}
	}
}

// Paths returns the file paths in v, for resolving relative paths against
// the configuration file's folder.
func (v *VaultConfig) Paths() []*string {
	return []*string{&v.TLS.CACert, &v.Auth.TokenFile, &v.Auth.RoleIDFile, &v.Auth.SecretIDFile, &v.Auth.ServiceAccountTokenFile}
}

var (
	vaultPathRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$`)
	hexRE       = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// NormalizeFingerprint returns fp as lower-case hex without colons or
// spaces.
func NormalizeFingerprint(fp string) string {
	return strings.ToLower(strings.NewReplacer(":", "", " ", "").Replace(fp))
}

// Validate reports every problem through add, with keys under root.vault.
func (v VaultConfig) Validate(add func(key, format string, args ...any)) {
	const k = "root.vault."
	u, err := url.Parse(v.Address)
	switch {
	case v.Address == "":
		add(k+"address", "must be set to Vault's URL, e.g. https://vault.vault.svc:8200")
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		add(k+"address", "%q is not an http(s) URL such as https://vault.vault.svc:8200", v.Address)
	case u.Scheme == "http" && !isLoopback(u.Hostname()):
		add(k+"address", "%q uses plain http to a remote host, which would send Vault tokens in clear; use https (plain http is accepted only for a loopback address)", v.Address)
	}
	if !vaultPathRE.MatchString(v.Mount) {
		add(k+"mount", "%q is not a Vault mount path such as pki or pki/root", v.Mount)
	}
	if v.IssuerRef != "" && (!vaultPathRE.MatchString(v.IssuerRef) || strings.Contains(v.IssuerRef, "/")) {
		add(k+"issuerRef", "%q is not an issuer name or ID", v.IssuerRef)
	}
	if v.Namespace != "" && !vaultPathRE.MatchString(v.Namespace) {
		add(k+"namespace", "%q is not a Vault namespace path such as team-a or org/team-a", v.Namespace)
	}
	if fp := v.ExpectedRootFingerprint; fp != "" && !hexRE.MatchString(NormalizeFingerprint(fp)) {
		add(k+"expectedRootFingerprint", "%q is not a SHA-256 fingerprint (64 hex digits, colons allowed); get it with: openssl x509 -in root.pem -noout -fingerprint -sha256", fp)
	}
	v.Auth.validate(add)
	for _, d := range []struct {
		key string
		d   Duration
	}{
		{"requestTimeout", v.RequestTimeout}, {"healthInterval", v.HealthInterval}, {"initialBackoff", v.InitialBackoff},
		{"maxBackoff", v.MaxBackoff}, {"crlRefreshInterval", v.CRLRefreshInterval},
	} {
		if d.d.Duration <= 0 {
			add(k+d.key, "must be positive")
		}
	}
	if v.LifetimeTolerance.Duration < 0 {
		add(k+"lifetimeTolerance", "must not be negative")
	}
	if v.MaxBackoff.Duration < v.InitialBackoff.Duration {
		add(k+"maxBackoff", "%s is below initialBackoff %s", v.MaxBackoff.Duration, v.InitialBackoff.Duration)
	}
}

func (a VaultAuthConfig) validate(add func(key, format string, args ...any)) {
	const k = "root.vault.auth."
	if a.Mount != "" && !vaultPathRE.MatchString(a.Mount) {
		add(k+"mount", "%q is not a Vault auth mount path such as approle", a.Mount)
	}
	switch a.Method {
	case VaultAuthToken:
	case VaultAuthAppRole:
		if (a.RoleID == "") == (a.RoleIDFile == "") {
			add(k+"roleID", "set exactly one of roleID and roleIDFile (the AppRole's role_id)")
		}
		if a.SecretIDFile == "" {
			add(k+"secretIDFile", "must be set: the file that holds the AppRole secret_id")
		}
	case VaultAuthKubernetes:
		if a.Role == "" {
			add(k+"role", "must be set: the Vault Kubernetes auth role meshca logs in as")
		}
	case "":
		add(k+"method", "must be set to token, approle or kubernetes")
	default:
		add(k+"method", "%q is not supported; use token, approle or kubernetes", a.Method)
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

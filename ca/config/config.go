// Package config owns meshca's configuration file: its schema, its defaults
// and its validation. Every section has Init (fill defaults) and Validate
// (errors that name the key and say how to fix it). It knows nothing about
// how the values are used.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/meshca/meshca/ca/identity"
	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/profile"
)

// Default values, named after the Istio knobs operators already know.
const (
	DefaultTrustDomain       = "cluster.local"
	DefaultCertTTL           = 24 * time.Hour
	DefaultMaxCertTTL        = 90 * 24 * time.Hour
	DefaultIntermediateLife  = 365 * 24 * time.Hour
	DefaultPrepareThreshold  = 0.5
	DefaultActivateThreshold = 0.66
	// DefaultRotationThreshold is the default of the deprecated
	// intermediate.rotationThreshold, an alias of activateThreshold.
	DefaultRotationThreshold = DefaultActivateThreshold
	DefaultGracePeriod       = 24 * time.Hour
	DefaultRetention         = 7 * 24 * time.Hour
	DefaultPruneInterval     = time.Hour
	DefaultCommitDelay       = 300 * time.Microsecond
	MaxCommitDelay           = 10 * time.Millisecond
	DefaultListen            = ":15012"
	DefaultOpsListen         = ":15014"
	DefaultShutdownTimeout   = 15 * time.Second
	DefaultDir               = ".meshca"
	// File names inside a --dir layout.
	RootCertFile = "root-cert.pem"
	RootKeyFile  = "root-key.pem"
	// RootPQKeyFile holds the ML-DSA key of a Catalyst root (its 2.5.29.72).
	RootPQKeyFile = "root-pq-key.pem"
	// PQAnchorFile is the post-quantum trust anchor meshca publishes (PEM
	// SubjectPublicKeyInfo), written in Config.LocalDir.
	PQAnchorFile = "pq-anchor.pem"
	KeysDir      = "keys"
	StoreFile    = "meshca.db"
	// AdminSocketFile is the default server.adminSocket, next to the bbolt
	// store (with PostgreSQL, next to the configuration file).
	AdminSocketFile = "admin.sock"
)

// Config is the whole meshca configuration file.
type Config struct {
	// TrustDomain is the SPIFFE trust domain of the mesh (Istio's meshConfig.trustDomain).
	TrustDomain  string             `json:"trustDomain"`
	Root         RootConfig         `json:"root"`
	Intermediate IntermediateConfig `json:"intermediate"`
	KeyStore     keys.Config        `json:"keyStore"`
	Store        StoreConfig        `json:"store"`
	Issuance     IssuanceConfig     `json:"issuance"`
	Server       ServerConfig       `json:"server"`
	Log          LogConfig          `json:"log"`
	TrustBundle  TrustBundleConfig  `json:"trustBundle"`
	// CRL configures the revocation lists meshca builds and publishes.
	CRL CRLConfig `json:"crl"`
	// Kubernetes and Authentication configure the cluster-facing parts.
	Kubernetes     KubernetesConfig     `json:"kubernetes"`
	Authentication AuthenticationConfig `json:"authentication"`
	// Alerts configures where alerts are sent (Slack, a webhook).
	Alerts AlertsConfig `json:"alerts,omitzero"`
	// Inventory configures the workload certificate inventories.
	Inventory InventoryConfig `json:"inventory,omitzero"`
	// Rotation configures the root rotation's default waits.
	Rotation RotationConfig `json:"rotation,omitzero"`
	// Signers configures the Kubernetes-native front doors (the CSR API,
	// PodCertificateRequests, cert-manager) and the manager they run on.
	Signers SignersConfig `json:"signers,omitzero"`
	// Clusters are the other clusters of a multi-cluster mesh (clusters.go).
	Clusters []ClusterConfig `json:"clusters,omitempty"`
	// BundleEndpoint serves the trust domain's SPIFFE bundle over HTTPS.
	BundleEndpoint BundleEndpointConfig `json:"bundleEndpoint,omitzero"`
	// Federation configures the foreign trust domains whose SPIFFE bundles
	// meshca polls and publishes (federation.go).
	Federation FederationConfig `json:"federation,omitzero"`
	// Audit configures the tamper-evident audit file.
	Audit AuditConfig `json:"audit,omitzero"`
}

// Root sources (root.source).
const (
	RootSourceFile  = "file"
	RootSourceVault = "vault"
)

// RootConfig selects where the enterprise root comes from.
type RootConfig struct {
	// Source is RootSourceFile or RootSourceVault.
	Source string         `json:"source"`
	File   FileRootConfig `json:"file"`
	Vault  VaultConfig    `json:"vault,omitzero"`
}

// FileRootConfig configures a file root in one of two modes:
// (a) RootCert+RootKey: meshca mints its own intermediate;
// (b) CACertsDir (Istio's four files): a pre-issued intermediate.
type FileRootConfig struct {
	RootCert string `json:"rootCert,omitempty"`
	RootKey  string `json:"rootKey,omitempty"`
	// RootPQKey is the ML-DSA key of a Catalyst root, whose certificate
	// carries it as 2.5.29.72; unused when the root has no such extension.
	RootPQKey  string `json:"rootPQKey,omitempty"`
	CACertsDir string `json:"cacertsDir,omitempty"`
}

// Minted reports whether meshca mints the intermediate (mode a).
func (f FileRootConfig) Minted() bool { return f.CACertsDir == "" }

// IntermediateConfig shapes the intermediate that meshca mints.
type IntermediateConfig struct {
	// Profile is the kind of CA (profile.Name): classical, catalyst (the
	// default), composite or mldsa.
	Profile profile.Name `json:"profile"`
	// PQAlgorithm is the post-quantum key of a catalyst or mldsa CA
	// (ML-DSA-65, ML-DSA-44, ML-DSA-87) or of a composite CA
	// (MLDSA65-ECDSA-P256-SHA512, MLDSA44-ECDSA-P256-SHA256).
	PQAlgorithm string `json:"pqAlgorithm,omitempty"`
	// KeyAlgorithm is the classical key of a classical or catalyst CA.
	KeyAlgorithm keys.Algorithm `json:"keyAlgorithm"`
	Lifetime     Duration       `json:"lifetime"`
	CommonName   string         `json:"commonName"`
	Organization string         `json:"organization"`
	// PrepareThreshold is the fraction of the active intermediate's
	// lifetime after which meshca prepares its successor: mints it,
	// records it as prepared and verifies it with a throwaway leaf
	// (default 0.5).
	PrepareThreshold float64 `json:"prepareThreshold"`
	// ActivateThreshold is the fraction of the active intermediate's
	// lifetime after which the prepared successor becomes the signing
	// intermediate (default 0.66).
	ActivateThreshold float64 `json:"activateThreshold"`
	// RotationThreshold is the deprecated name of ActivateThreshold; after
	// defaults it mirrors ActivateThreshold.
	RotationThreshold float64 `json:"rotationThreshold"`
	// activateKey is the key the activation threshold came from, for
	// messages: rotationThreshold when only the deprecated name was set.
	activateKey string
	// GracePeriod is how long a retired intermediate stays published (its
	// chain, and its CRL served) after its last leaf has expired.
	GracePeriod Duration `json:"gracePeriod"`
}

// IssuanceConfig shapes workload certificates.
type IssuanceConfig struct {
	// Profile is the profile of workload certificates; it must be one the
	// intermediate's profile can issue (a catalyst CA issues catalyst or
	// classical). Default: the intermediate's own.
	Profile        profile.Name `json:"profile"`
	DefaultCertTTL Duration     `json:"defaultCertTTL"`
	MaxCertTTL     Duration     `json:"maxCertTTL"`
	// CRLDistributionPoints are HTTP URLs placed in every issued certificate.
	CRLDistributionPoints []string `json:"crlDistributionPoints,omitempty"`
	// Policies are named exceptions to the strict SPIFFE-only rule.
	Policies []PolicyConfig `json:"policies,omitempty"`
	// VerifySignatures says which fresh certificate signatures meshca
	// checks against the CA's public key before it answers: "auto" (the
	// default) checks RSA, ML-DSA and composite signatures and every
	// signature from a key outside the process (PKCS#11), and skips the
	// check for in-process software ECDSA and Ed25519 keys; "always" checks
	// every signature, as Go's x509.CreateCertificate does.
	VerifySignatures string `json:"verifySignatures,omitempty"`
}

// The values of issuance.verifySignatures.
const (
	VerifySignaturesAuto   = "auto"
	VerifySignaturesAlways = "always"
)

// PolicyConfig is a named exception: identities that match may request
// extra SANs or a longer TTL.
type PolicyConfig struct {
	Name string `json:"name"`
	// Identities are SPIFFE ID patterns of the mesh's trust domain this
	// policy applies to. A path segment "*" matches exactly one segment
	// (spiffe://td/ns/gateways/sa/*); a last segment "**" matches one or more
	// (spiffe://td/ns/gateways/**). "*" is never part of a segment.
	Identities []string `json:"identities"`
	// DNSNames the CSR may carry; "*.example.com" matches one label. A CSR
	// asking for a wildcard name (a "*" label) is always refused.
	DNSNames []string `json:"dnsNames,omitempty"`
	// IPRanges the CSR's IP SANs must fall in (CIDR).
	IPRanges []string `json:"ipRanges,omitempty"`
	// AllowCommonName permits a CN equal to one of the allowed DNS names.
	AllowCommonName bool `json:"allowCommonName,omitempty"`
	// MaxCertTTL overrides issuance.maxCertTTL for these identities.
	MaxCertTTL Duration `json:"maxCertTTL,omitempty"`
}

// LogConfig configures structured logging.
type LogConfig struct {
	Level  string `json:"level"`
	Format string `json:"format"`
}

// Defaults returns the configuration for a --dir layout created by meshca init.
func Defaults(dir string) *Config {
	c := &Config{
		Root: RootConfig{Source: RootSourceFile, File: FileRootConfig{
			RootCert:  filepath.Join(dir, RootCertFile),
			RootKey:   filepath.Join(dir, RootKeyFile),
			RootPQKey: filepath.Join(dir, RootPQKeyFile),
		}},
		KeyStore: keys.Config{Type: "softkms", Dir: filepath.Join(dir, KeysDir)},
		Store:    StoreConfig{Type: "bolt", Path: filepath.Join(dir, StoreFile)},
	}
	c.Init()
	return c
}

// Load reads a YAML configuration file, rejecting unknown keys, and fills
// defaults. Relative paths are taken relative to the file's directory.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	c.resolvePaths(filepath.Dir(path))
	if c.Server.AdminSocket == "" && c.Store.Type == StorePostgres {
		// No store file to sit next to: the configuration's directory.
		c.Server.AdminSocket = filepath.Join(filepath.Dir(path), AdminSocketFile)
	}
	c.Federation.Init(c.Server.AdminSocket)
	return c, nil
}

// Parse decodes YAML bytes strictly and fills defaults. It does not validate.
func Parse(b []byte) (*Config, error) {
	c := &Config{}
	j, err := yaml.YAMLToJSONStrict(b)
	if err != nil {
		return nil, fmt.Errorf("not valid YAML: %w", err)
	}
	// Case-sensitive and strict: an unknown, misspelt or duplicated key is
	// an error, so a typo never silently falls back to a default.
	strict, err := sigsjson.UnmarshalStrict(j, c)
	if te := typeError(err); te != nil {
		return nil, te
	}
	if err != nil {
		return nil, fmt.Errorf("%w (check the key names against deploy/examples/meshca.yaml)", err)
	}
	if len(strict) > 0 {
		return nil, fmt.Errorf("%w (keys are case-sensitive; check them against deploy/examples/meshca.yaml)", errors.Join(strict...))
	}
	c.Init()
	return c, nil
}

func (c *Config) resolvePaths(base string) {
	if c.Kubernetes.Kubeconfig != "" && !filepath.IsAbs(c.Kubernetes.Kubeconfig) {
		c.Kubernetes.Kubeconfig = filepath.Join(base, c.Kubernetes.Kubeconfig)
	}
	c.Audit.resolvePath(base)
	for _, p := range append([]*string{&c.Root.File.RootCert, &c.Root.File.RootKey, &c.Root.File.RootPQKey, &c.Root.File.CACertsDir, &c.KeyStore.Dir, &c.Store.Path, &c.Store.PasswordFile, &c.Server.AdminSocket, &c.CRL.RootCRL.File, &c.Alerts.Slack.WebhookURLFile, &c.Alerts.Webhook.URLFile}, append(c.Root.Vault.Paths(), c.Federation.paths()...)...) {
		if *p != "" && !filepath.IsAbs(*p) && !strings.Contains(*p, ":") {
			*p = filepath.Join(base, *p)
		}
	}
	c.resolveClusterPaths(base)
	c.BundleEndpoint.resolvePaths(base)
}

// Init fills every unset value with its default.
func (c *Config) Init() {
	if c.TrustDomain == "" {
		c.TrustDomain = DefaultTrustDomain
	}
	if c.Root.Source == "" {
		c.Root.Source = RootSourceFile
	}
	if c.Root.Source == RootSourceVault {
		c.Root.Vault.Init()
		if c.Intermediate.Profile == "" {
			c.Intermediate.Profile = profile.Classical // Vault signs classically only
		}
	}
	c.Intermediate.init()
	if c.KeyStore.Type == "" {
		c.KeyStore.Type = "softkms"
	}
	c.Store.init()
	c.Issuance.init()
	if c.Issuance.Profile == "" {
		c.Issuance.Profile = c.Intermediate.Profile.DefaultLeaf()
	}
	c.Server.init()
	if c.Server.AdminSocket == "" && c.Store.Path != "" {
		c.Server.AdminSocket = filepath.Join(filepath.Dir(c.Store.Path), AdminSocketFile)
	}
	c.Kubernetes.init()
	c.Authentication.init()
	c.initCertSigners()
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "json"
	}
	c.TrustBundle.init()
	c.CRL.init()
	c.Alerts.Init()
	c.Inventory.init()
	c.Signers.init(c)
	c.initClusters()
	c.BundleEndpoint.init(c.TrustDomain)
	c.Federation.Init(c.Server.AdminSocket)
	c.Audit.init()
}

func (i *IntermediateConfig) init() {
	if i.Profile == "" {
		i.Profile = profile.Default
	}
	if i.PQAlgorithm == "" {
		i.PQAlgorithm = i.Profile.DefaultPQAlgorithm()
	}
	if i.KeyAlgorithm == "" {
		i.KeyAlgorithm = keys.ECP256
	}
	if i.Lifetime.Duration == 0 {
		i.Lifetime.Duration = DefaultIntermediateLife
	}
	if i.CommonName == "" {
		i.CommonName = "meshca intermediate"
	}
	if i.Organization == "" {
		i.Organization = "meshca"
	}
	i.activateKey = "intermediate.activateThreshold"
	if i.ActivateThreshold == 0 {
		i.ActivateThreshold = DefaultActivateThreshold
		if i.RotationThreshold != 0 {
			i.ActivateThreshold = i.RotationThreshold
			i.activateKey = "intermediate.rotationThreshold"
		}
	}
	if i.PrepareThreshold == 0 {
		// Half-way, or (for an activation at or before half-way) three
		// quarters of the way to the activation.
		i.PrepareThreshold = DefaultPrepareThreshold
		if i.ActivateThreshold <= DefaultPrepareThreshold {
			i.PrepareThreshold = i.ActivateThreshold * 0.75
		}
	}
	if i.RotationThreshold == 0 {
		i.RotationThreshold = i.ActivateThreshold
	}
	if i.GracePeriod.Duration == 0 {
		i.GracePeriod.Duration = DefaultGracePeriod
	}
}

func (i *IssuanceConfig) init() {
	if i.VerifySignatures == "" {
		i.VerifySignatures = VerifySignaturesAuto
	}
	if i.DefaultCertTTL.Duration == 0 {
		i.DefaultCertTTL.Duration = DefaultCertTTL
	}
	if i.MaxCertTTL.Duration == 0 {
		i.MaxCertTTL.Duration = DefaultMaxCertTTL
	}
}

// validatePKCS11 checks what a PKCS#11 token can hold. The classical
// intermediate key is generated in the token; HSMs don't offer ML-DSA yet
// (PKCS#11 3.2 defines it, but tokens and the Go PKCS#11 key manager do not
// implement it), so a catalyst CA keeps its
// ML-DSA key in a 0600 file in keyStore.dir, and composite and mldsa CAs,
// whose only key would be such a file, are refused.
func (c *Config) validatePKCS11(add func(key, format string, args ...any)) {
	switch c.Intermediate.Profile {
	case profile.Catalyst:
		if c.KeyStore.Dir == "" {
			add("keyStore.dir", "must be set with keyStore.type pkcs11 and intermediate.profile catalyst: HSMs don't offer ML-DSA yet, so the classical key is generated in the token and the ML-DSA key is kept in a 0600 file in this directory (or use intermediate.profile classical)")
		}
	case profile.Composite, profile.MLDSA:
		add("intermediate.profile", "%q keeps the CA's only key in a file, outside the PKCS#11 token (HSMs don't offer ML-DSA yet); use catalyst (classical key in the token, ML-DSA key in keyStore.dir) or classical, or keyStore.type softkms", c.Intermediate.Profile)
	}
	if c.Intermediate.Profile != profile.Composite && c.Intermediate.Profile != profile.MLDSA && c.Intermediate.KeyAlgorithm == keys.Ed25519 {
		add("intermediate.keyAlgorithm", "Ed25519 cannot be created in a PKCS#11 token by meshca; use EC-P256, EC-P384 or RSA-3072")
	}
}

// Validate returns every problem at once, each naming its key and the fix.
func (c *Config) Validate() error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	td, err := identity.TrustDomain(c.TrustDomain)
	if err != nil {
		add("trustDomain", "%v; use lower-case letters, digits, dots, dashes and underscores, e.g. cluster.local", err)
	}
	c.Root.validate(add)
	c.Intermediate.validate(add)
	if c.Root.Source == RootSourceVault && c.Intermediate.Profile != profile.Classical {
		add("intermediate.profile", "%q needs a post-quantum signature from the root, which Vault's PKI engine cannot make; use classical with root.source vault", c.Intermediate.Profile)
	}
	switch c.KeyStore.Type {
	case "softkms":
		if c.KeyStore.Dir == "" {
			add("keyStore.dir", "must be set for softkms: the directory where meshca writes its 0600 key files")
		}
	case "pkcs11":
		if !strings.HasPrefix(c.KeyStore.URI, "pkcs11:") {
			add("keyStore.uri", "must be a pkcs11: URI, e.g. pkcs11:module-path=/usr/lib/softhsm/libsofthsm2.so;token=meshca?pin-source=/etc/meshca/pin")
		}
		c.validatePKCS11(add)
	default:
		add("keyStore.type", "%q is not supported; use softkms or pkcs11", c.KeyStore.Type)
	}
	c.Store.validate(add)
	c.Issuance.validate(td, add)
	if c.Intermediate.Profile.Valid() {
		if err := c.Intermediate.Profile.CheckLeaf(c.Issuance.Profile); err != nil {
			add("issuance.profile", "%v; set issuance.profile to %s or change intermediate.profile", err, c.Intermediate.Profile.DefaultLeaf())
		}
	}
	c.Server.validate(add)
	c.Server.validateAdmin(c.TrustDomain, c.Kubernetes.InCluster || c.Kubernetes.Kubeconfig != "", add)
	c.Kubernetes.validate(add)
	if c.TrustBundle.Enabled && !c.Kubernetes.Configured() {
		add("trustBundle.enabled", "needs a cluster: set kubernetes.kubeconfig or kubernetes.inCluster")
	}
	c.Authentication.validate(add)
	c.validateCertSigners(td, add)
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		add("log.format", "%q is not json or text", c.Log.Format)
	}
	c.TrustBundle.validate(add)
	c.CRL.validate(c.Root, c.Server, c.BundleEndpoint.Address, add)
	c.Alerts.validate(add)
	c.Inventory.validate(add)
	c.Signers.validate(c, add)
	c.Rotation.Root.validate(add)
	c.validateClusters(add)
	c.BundleEndpoint.validate(td, add)
	c.Federation.validate(c.TrustDomain, add)
	c.Audit.validate(add)
	return errors.Join(errs...)
}

func (r RootConfig) validate(add func(string, string, ...any)) {
	switch r.Source {
	case RootSourceFile:
	case RootSourceVault:
		if r.File != (FileRootConfig{}) {
			add("root.file", "must be empty when root.source is vault: the root lives in Vault")
		}
		r.Vault.Validate(add)
		return
	default:
		add("root.source", "%q is not supported; use file or vault", r.Source)
		return
	}
	f := r.File
	switch {
	case f.CACertsDir != "" && (f.RootCert != "" || f.RootKey != "" || f.RootPQKey != ""):
		add("root.file", "set either rootCert+rootKey (meshca mints its intermediate) or cacertsDir (a pre-issued intermediate), not both")
	case f.CACertsDir == "" && (f.RootCert == "" || f.RootKey == ""):
		add("root.file", "set rootCert and rootKey (meshca mints its intermediate), or cacertsDir with Istio's ca-cert.pem, ca-key.pem, cert-chain.pem and root-cert.pem")
	}
}

func (i IntermediateConfig) validate(add func(string, string, ...any)) {
	switch {
	case !i.Profile.Valid():
		add("intermediate.profile", "%q is not supported; use one of %v (default %s)", i.Profile, profile.All, profile.Default)
	case i.Profile == profile.Classical && i.PQAlgorithm != "":
		add("intermediate.pqAlgorithm", "%q is set, but a classical CA holds no post-quantum key; remove it or choose another intermediate.profile", i.PQAlgorithm)
	case i.Profile != profile.Classical && !slices.Contains(i.Profile.PQAlgorithms(), i.PQAlgorithm):
		add("intermediate.pqAlgorithm", "%q is not supported by the %s profile; use one of %v", i.PQAlgorithm, i.Profile, i.Profile.PQAlgorithms())
	}
	if !i.KeyAlgorithm.Valid() {
		add("intermediate.keyAlgorithm", "%q is not supported; use one of %v", i.KeyAlgorithm, keys.Algorithms)
	}
	if i.Lifetime.Duration < time.Hour {
		add("intermediate.lifetime", "%s is too short; use at least 1h (default 8760h)", i.Lifetime.Duration)
	}
	if i.RotationThreshold != i.ActivateThreshold {
		add("intermediate.rotationThreshold", "%v differs from intermediate.activateThreshold %v; rotationThreshold is the deprecated name of activateThreshold: set only activateThreshold", i.RotationThreshold, i.ActivateThreshold)
	}
	key := i.activateKey
	if key == "" {
		key = "intermediate.activateThreshold"
	}
	if i.ActivateThreshold <= 0 || i.ActivateThreshold >= 1 {
		add(key, "%v must be between 0 and 1 (the fraction of the lifetime after which the prepared successor becomes active; default %v; rotationThreshold is its deprecated name)", i.ActivateThreshold, DefaultActivateThreshold)
	}
	if (i.PrepareThreshold <= 0 || i.PrepareThreshold >= i.ActivateThreshold) && i.ActivateThreshold > 0 {
		add("intermediate.prepareThreshold", "%v must be above 0 and below intermediate.activateThreshold %v (the fraction of the lifetime after which meshca mints and verifies the successor; default %v)", i.PrepareThreshold, i.ActivateThreshold, DefaultPrepareThreshold)
	}
	if i.GracePeriod.Duration < 0 {
		add("intermediate.gracePeriod", "must not be negative")
	}
}

func (i IssuanceConfig) validate(td spiffeid.TrustDomain, add func(string, string, ...any)) {
	if i.DefaultCertTTL.Duration < time.Minute {
		add("issuance.defaultCertTTL", "%s is too short; use at least 1m (Istio's default is 24h)", i.DefaultCertTTL.Duration)
	}
	if i.MaxCertTTL.Duration < i.DefaultCertTTL.Duration {
		add("issuance.maxCertTTL", "%s is below defaultCertTTL %s; raise maxCertTTL or lower defaultCertTTL", i.MaxCertTTL.Duration, i.DefaultCertTTL.Duration)
	}
	switch i.VerifySignatures {
	case "", VerifySignaturesAuto, VerifySignaturesAlways:
	default:
		add("issuance.verifySignatures", "%q is not a choice; use auto (check RSA, post-quantum and hardware-token signatures, skip in-process ECDSA/Ed25519) or always (check every signature)", i.VerifySignatures)
	}
	for _, u := range i.CRLDistributionPoints {
		if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			add("issuance.crlDistributionPoints", "%q is not an http(s) URL", u)
		}
	}
	validatePolicies("issuance.policies", td, i.Policies, add)
}

// validatePolicies checks a list of named exceptions (issuance.policies, or
// a CertSigner's own) under key.
func validatePolicies(key string, td spiffeid.TrustDomain, policies []PolicyConfig, add func(string, string, ...any)) {
	seen := map[string]bool{}
	for n, p := range policies {
		key := fmt.Sprintf("%s[%d]", key, n)
		if p.Name == "" {
			add(key+".name", "must be set")
		} else if seen[p.Name] {
			add(key+".name", "%q is used twice", p.Name)
		}
		seen[p.Name] = true
		if len(p.Identities) == 0 {
			add(key+".identities", "must list at least one SPIFFE ID pattern, e.g. spiffe://%s/ns/istio-system/sa/* (* is one whole path segment, ** ends a pattern and matches the rest)", td)
		}
		validatePolicyPatterns(key, td, p, add)
		for _, r := range p.IPRanges {
			if _, _, err := net.ParseCIDR(r); err != nil {
				add(key+".ipRanges", "%q is not a CIDR such as 10.0.0.0/8", r)
			}
		}
		if p.MaxCertTTL.Duration < 0 {
			add(key+".maxCertTTL", "must not be negative")
		}
	}
}

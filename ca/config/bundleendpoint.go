package config

import (
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/meshca/meshca/ca/identity"
)

// The SPIFFE bundle endpoint's profiles (SPIFFE Federation specification,
// section 5.2).
const (
	// BundleProfileWeb serves with an operator's Web-PKI certificate
	// (section 5.2.1): clients use their system roots. Istio's
	// spiffeBundleUrl fetches this way.
	BundleProfileWeb = "https_web"
	// BundleProfileSPIFFE serves with an X.509-SVID of the trust domain
	// that meshca issues to itself (section 5.2.2): clients pin its SPIFFE
	// ID and a bootstrap bundle (SPIRE's federation does).
	BundleProfileSPIFFE = "https_spiffe"
)

// Bundle endpoint defaults.
const (
	// DefaultBundleRefreshHint is spiffe_refresh_hint: how often consumers
	// fetch the bundle again.
	DefaultBundleRefreshHint = 5 * time.Minute
	// MinBundleRefreshHint keeps consumers from polling meshca hard.
	MinBundleRefreshHint = 10 * time.Second
	// DefaultBundleCertReload is how often https_web's certificate files
	// are checked for a change.
	DefaultBundleCertReload = 30 * time.Second
	// DefaultBundleSVIDTTL is the lifetime of https_spiffe's serving SVID
	// (renewed at two thirds of it).
	DefaultBundleSVIDTTL   = 24 * time.Hour
	DefaultBundleMaxConns  = 256
	DefaultBundleEndpoint  = "/"
	defaultBundleNamespace = "istio-system"
	defaultBundleSA        = "meshca"
)

// BundleEndpointConfig is the SPIFFE bundle endpoint (SPIFFE Federation
// specification, section 4): an HTTPS server of the trust domain's bundle,
// the roots meshca publishes for Istio, in the JWKS format of the SPIFFE
// Trust Domain and Bundle specification. Off unless Address is set.
type BundleEndpointConfig struct {
	// Address is the listen address, e.g. ":8443". Empty: no endpoint.
	Address string `json:"address,omitempty"`
	// Path is the URL path the bundle is served at; default "/".
	Path string `json:"path,omitempty"`
	// Profile is https_web (the default) or https_spiffe.
	Profile string `json:"profile,omitempty"`
	// Web configures https_web.
	Web BundleWebConfig `json:"https_web,omitzero"`
	// SPIFFE configures https_spiffe.
	SPIFFE BundleSPIFFEConfig `json:"https_spiffe,omitzero"`
	// RefreshHint is spiffe_refresh_hint; default 5m.
	RefreshHint Duration `json:"refreshHint,omitzero"`
	// MaxConnections bounds the endpoint's open connections (a quarter of
	// them per source address); default 256.
	MaxConnections int `json:"maxConnections,omitempty"`
}

// BundleWebConfig is https_web's Web-PKI serving certificate.
type BundleWebConfig struct {
	// CertFile (PEM, the leaf first, then its intermediates) and KeyFile
	// (PEM, mode 0600) are re-read when they change (cert-manager or an
	// operator replacing them).
	CertFile string `json:"certFile,omitempty"`
	KeyFile  string `json:"keyFile,omitempty"`
	// ReloadInterval is how often the files are checked; default 30s.
	ReloadInterval Duration `json:"reloadInterval,omitzero"`
}

// BundleSPIFFEConfig is https_spiffe's serving X.509-SVID.
type BundleSPIFFEConfig struct {
	// SPIFFEID is the endpoint's SPIFFE ID, which consumers pin; default
	// spiffe://<trustDomain>/ns/istio-system/sa/meshca.
	SPIFFEID string `json:"spiffeID,omitempty"`
	// DNSNames are added to the SVID for clients that also check the host.
	DNSNames []string `json:"dnsNames,omitempty"`
	// CertTTL is the SVID's lifetime; default 24h.
	CertTTL Duration `json:"certTTL,omitzero"`
}

// Enabled reports whether the endpoint is configured.
func (b BundleEndpointConfig) Enabled() bool { return b.Address != "" }

// ID is https_spiffe's SPIFFE ID (valid after Validate).
func (b BundleEndpointConfig) ID() spiffeid.ID {
	id, _ := spiffeid.FromString(b.SPIFFE.SPIFFEID)
	return id
}

func (b *BundleEndpointConfig) init(trustDomain string) {
	if !b.Enabled() {
		return
	}
	if b.Path == "" {
		b.Path = DefaultBundleEndpoint
	}
	if b.Profile == "" {
		b.Profile = BundleProfileWeb
	}
	if b.RefreshHint.Duration == 0 {
		b.RefreshHint.Duration = DefaultBundleRefreshHint
	}
	if b.MaxConnections == 0 {
		b.MaxConnections = DefaultBundleMaxConns
	}
	if b.Web.ReloadInterval.Duration == 0 {
		b.Web.ReloadInterval.Duration = DefaultBundleCertReload
	}
	if b.SPIFFE.CertTTL.Duration == 0 {
		b.SPIFFE.CertTTL.Duration = DefaultBundleSVIDTTL
	}
	if b.Profile == BundleProfileSPIFFE && b.SPIFFE.SPIFFEID == "" {
		b.SPIFFE.SPIFFEID = "spiffe://" + trustDomain + "/ns/" + defaultBundleNamespace + "/sa/" + defaultBundleSA
	}
}

func (b *BundleEndpointConfig) resolvePaths(base string) {
	for _, p := range []*string{&b.Web.CertFile, &b.Web.KeyFile} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
}

func (b BundleEndpointConfig) validate(td spiffeid.TrustDomain, add func(string, string, ...any)) {
	if !b.Enabled() {
		return
	}
	if _, _, err := net.SplitHostPort(b.Address); err != nil {
		add("bundleEndpoint.address", "%s is not host:port (%v); use e.g. :8443", identity.Quote(b.Address), err)
	}
	if !strings.HasPrefix(b.Path, "/") || strings.ContainsAny(b.Path, "?#* \t") {
		add("bundleEndpoint.path", "%s must be a URL path starting with / (no query, fragment or wildcard), e.g. / or /bundle", identity.Quote(b.Path))
	}
	if b.RefreshHint.Duration < MinBundleRefreshHint {
		add("bundleEndpoint.refreshHint", "%s is too short; use at least %s (default %s): every consumer fetches the bundle this often", b.RefreshHint.Duration, MinBundleRefreshHint, DefaultBundleRefreshHint)
	}
	if b.MaxConnections < 4 {
		add("bundleEndpoint.maxConnections", "%d is too few; use at least 4 (default %d)", b.MaxConnections, DefaultBundleMaxConns)
	}
	switch b.Profile {
	case BundleProfileWeb:
		if b.Web.CertFile == "" || b.Web.KeyFile == "" {
			add("bundleEndpoint.https_web", "certFile and keyFile must both be set for profile https_web: a Web-PKI certificate for the endpoint's host name (or use profile https_spiffe, served with an X.509-SVID meshca issues itself)")
		}
		if b.Web.ReloadInterval.Duration < time.Second {
			add("bundleEndpoint.https_web.reloadInterval", "%s is too short; use at least 1s (default %s)", b.Web.ReloadInterval.Duration, DefaultBundleCertReload)
		}
	case BundleProfileSPIFFE:
		id, err := identity.Parse(b.SPIFFE.SPIFFEID)
		switch {
		case err != nil:
			add("bundleEndpoint.https_spiffe.spiffeID", "%v; use e.g. spiffe://%s/ns/istio-system/sa/meshca", err, td)
		case !td.IsZero() && !id.MemberOf(td):
			add("bundleEndpoint.https_spiffe.spiffeID", "%s is not of the trust domain %s: meshca issues SVIDs of its own trust domain only", identity.Quote(b.SPIFFE.SPIFFEID), td)
		}
		if b.SPIFFE.CertTTL.Duration < 10*time.Minute {
			add("bundleEndpoint.https_spiffe.certTTL", "%s is too short; use at least 10m (default %s)", b.SPIFFE.CertTTL.Duration, DefaultBundleSVIDTTL)
		}
	default:
		add("bundleEndpoint.profile", "%s is not %s or %s", identity.Quote(b.Profile), BundleProfileWeb, BundleProfileSPIFFE)
	}
}

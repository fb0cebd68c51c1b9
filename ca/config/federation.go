package config

import (
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/meshca/meshca/ca/identity"
)

// Federation defaults. A bundle endpoint's spiffe_refresh_hint (SPIFFE Trust
// Domain and Bundle specification, §4.1.2) is clamped to
// [minRefresh, maxRefresh]; without a hint meshca polls every
// DefaultFederationRefresh (clamped the same way).
const (
	DefaultFederationMinRefresh = 30 * time.Second
	DefaultFederationMaxRefresh = 30 * time.Minute
	DefaultFederationRefresh    = 5 * time.Minute
	DefaultFederationStaleAfter = 2 * time.Hour
	// FederationStateDir is the default federation.stateDir, next to the
	// admin socket.
	FederationStateDir = "federation"
)

// Bundle endpoint profiles: how the endpoint is authenticated (SPIFFE Trust
// Domain and Bundle specification, §5.2.1 Web PKI and §5.2.2 SPIFFE
// authentication).
const (
	FederationProfileWeb    = "https_web"
	FederationProfileSPIFFE = "https_spiffe"
)

// FederationConfig configures federation in: the SPIFFE bundle endpoints of
// foreign trust domains that meshca polls and whose roots it publishes for
// Istio.
type FederationConfig struct {
	// TrustDomains are the foreign trust domains, one bundle endpoint each.
	TrustDomains []FederatedTrustDomainConfig `json:"trustDomains,omitempty"`
	// StaleAfter is the age (since the last successful fetch) after which a
	// foreign bundle counts as stale and alerts fire; default 2h.
	StaleAfter Duration `json:"staleAfter,omitzero"`
	// MinRefresh and MaxRefresh clamp the endpoint's refresh hint; defaults
	// 30s and 30m.
	MinRefresh Duration `json:"minRefresh,omitzero"`
	MaxRefresh Duration `json:"maxRefresh,omitzero"`
	// StateDir keeps the last good bundle of each trust domain (0600 files,
	// a directory only meshca's user or root owns and others cannot write),
	// so that a restart keeps trusting it and authenticates an https_spiffe
	// endpoint with it; `meshca federation snippet --pem` reads it. Default:
	// "federation" next to server.adminSocket.
	StateDir string `json:"stateDir,omitempty"`
}

// FederatedTrustDomainConfig is one foreign trust domain.
type FederatedTrustDomainConfig struct {
	// TrustDomain is the foreign trust domain's name, e.g. partner.example.
	TrustDomain string `json:"trustDomain"`
	// BundleEndpointURL is its SPIFFE bundle endpoint (https).
	BundleEndpointURL string `json:"bundleEndpointURL"`
	// Profile is https_web (the endpoint has a Web PKI certificate) or
	// https_spiffe (it presents an X.509-SVID of the foreign trust domain).
	Profile string `json:"profile"`
	// EndpointSPIFFEID is the SPIFFE ID the https_spiffe endpoint presents.
	EndpointSPIFFEID string `json:"endpointSPIFFEID,omitempty"`
	// BootstrapBundle is a PEM file with the foreign trust domain's roots,
	// used to authenticate an https_spiffe endpoint until a bundle has been
	// fetched (then the last fetched bundle is used).
	BootstrapBundle string `json:"bootstrapBundle,omitempty"`
	// CAFile is an optional PEM file of extra roots for an https_web
	// endpoint, added to the system roots.
	CAFile string `json:"caFile,omitempty"`
}

// Enabled reports whether any foreign trust domain is configured.
func (f FederationConfig) Enabled() bool { return len(f.TrustDomains) > 0 }

// Init fills the defaults; adminSocket places the default stateDir.
func (f *FederationConfig) Init(adminSocket string) {
	for _, d := range []struct {
		v   *Duration
		def time.Duration
	}{
		{&f.StaleAfter, DefaultFederationStaleAfter},
		{&f.MinRefresh, DefaultFederationMinRefresh},
		{&f.MaxRefresh, DefaultFederationMaxRefresh},
	} {
		if d.v.Duration == 0 {
			d.v.Duration = d.def
		}
	}
	if f.StateDir == "" && adminSocket != "" {
		f.StateDir = filepath.Join(filepath.Dir(adminSocket), FederationStateDir)
	}
}

// paths are the section's file paths, resolved relative to the
// configuration file.
func (f *FederationConfig) paths() []*string {
	out := []*string{&f.StateDir}
	for i := range f.TrustDomains {
		out = append(out, &f.TrustDomains[i].BootstrapBundle, &f.TrustDomains[i].CAFile)
	}
	return out
}

// validate checks the section; own is the mesh's trust domain.
func (f FederationConfig) validate(own string, add func(string, string, ...any)) {
	if f.MinRefresh.Duration < time.Second {
		add("federation.minRefresh", "%s is too short; use at least 1s (default %s)", f.MinRefresh.Duration, DefaultFederationMinRefresh)
	}
	if f.MaxRefresh.Duration < f.MinRefresh.Duration {
		add("federation.maxRefresh", "%s is below federation.minRefresh %s; raise maxRefresh (default %s)", f.MaxRefresh.Duration, f.MinRefresh.Duration, DefaultFederationMaxRefresh)
	}
	if f.StaleAfter.Duration <= f.MaxRefresh.Duration {
		add("federation.staleAfter", "%s must be longer than federation.maxRefresh %s, or every bundle would count as stale between two fetches (default %s)", f.StaleAfter.Duration, f.MaxRefresh.Duration, DefaultFederationStaleAfter)
	}
	if f.Enabled() && f.StateDir == "" {
		add("federation.stateDir", "must be set: the directory where meshca keeps the last good bundle of each foreign trust domain")
	}
	seen := map[string]bool{}
	for i, d := range f.TrustDomains {
		key := fmt.Sprintf("federation.trustDomains[%d]", i)
		td, err := identity.TrustDomain(d.TrustDomain)
		switch {
		case d.TrustDomain == "":
			add(key+".trustDomain", "must be set: the foreign trust domain's name, e.g. partner.example")
		case err != nil:
			add(key+".trustDomain", "%v; use lower-case letters, digits, dots, dashes and underscores, e.g. partner.example", err)
		case d.TrustDomain == own:
			add(key+".trustDomain", "%q is the mesh's own trustDomain; federation is for foreign trust domains (meshca publishes its own roots through trustBundle)", d.TrustDomain)
		case seen[d.TrustDomain]:
			add(key+".trustDomain", "%q is listed twice; keep one entry per trust domain", d.TrustDomain)
		}
		seen[d.TrustDomain] = true
		validateBundleEndpointURL(key+".bundleEndpointURL", d.BundleEndpointURL, add)
		switch d.Profile {
		case FederationProfileWeb:
			if d.EndpointSPIFFEID != "" || d.BootstrapBundle != "" {
				add(key, "endpointSPIFFEID and bootstrapBundle belong to profile https_spiffe; remove them, or set profile: https_spiffe")
			}
		case FederationProfileSPIFFE:
			d.validateSPIFFE(key, td, err == nil, add)
		case "":
			add(key+".profile", "must be set: https_web (the endpoint has a Web PKI certificate) or https_spiffe (it presents an X.509-SVID; then set endpointSPIFFEID and bootstrapBundle)")
		default:
			add(key+".profile", "%q is not a bundle endpoint profile; use https_web or https_spiffe", d.Profile)
		}
	}
}

func (d FederatedTrustDomainConfig) validateSPIFFE(key string, td spiffeid.TrustDomain, tdOK bool, add func(string, string, ...any)) {
	if d.CAFile != "" {
		add(key+".caFile", "belongs to profile https_web; an https_spiffe endpoint is authenticated with the trust domain's bundle (bootstrapBundle), not Web PKI roots")
	}
	if d.BootstrapBundle == "" {
		add(key+".bootstrapBundle", "must be set with profile https_spiffe: a PEM file with the foreign trust domain's roots, obtained out of band, to authenticate the endpoint until its first bundle is fetched")
	}
	if d.EndpointSPIFFEID == "" {
		add(key+".endpointSPIFFEID", "must be set with profile https_spiffe: the SPIFFE ID the endpoint presents, e.g. spiffe://%s/spire/server", d.TrustDomain)
		return
	}
	id, err := identity.Parse(d.EndpointSPIFFEID)
	if err != nil {
		add(key+".endpointSPIFFEID", "%v", err)
		return
	}
	if tdOK && id.TrustDomain() != td {
		add(key+".endpointSPIFFEID", "%s is not in trust domain %s; meshca authenticates the endpoint with that trust domain's bundle, so its SPIFFE ID must belong to it", id, td)
	}
}

func validateBundleEndpointURL(key, s string, add func(string, string, ...any)) {
	u, err := url.Parse(s)
	switch {
	case s == "":
		add(key, "must be set: the foreign trust domain's SPIFFE bundle endpoint, e.g. https://spire.partner.example:8443")
	case err != nil || u.Scheme != "https" || u.Host == "":
		add(key, "%s is not an https URL; bundle endpoints are served over HTTPS (SPIFFE Trust Domain and Bundle §5), e.g. https://spire.partner.example:8443", identity.Quote(s))
	case u.User != nil || u.Fragment != "" || strings.ContainsAny(u.Host, " "):
		add(key, "%s must not carry credentials or a fragment", identity.Quote(s))
	}
}

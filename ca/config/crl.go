package config

import (
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// CRL defaults (RFC 5280 section 5: thisUpdate/nextUpdate).
const (
	DefaultCRLValidity       = 24 * time.Hour
	DefaultCRLCoalesceWindow = 200 * time.Millisecond
	DefaultRootCRLRefresh    = time.Hour
	MaxCRLCoalesceWindow     = 10 * time.Second
	MinCRLValidity           = time.Minute
)

// CRLConfig configures the certificate revocation lists meshca builds and
// distributes.
type CRLConfig struct {
	// Validity is nextUpdate - thisUpdate of every CRL meshca builds
	// (RFC 5280 section 5.1.2.5); default 24h.
	Validity Duration `json:"validity"`
	// RepublishInterval is how often every CRL is rebuilt and published
	// with a new thisUpdate, so that relying parties never hold one past
	// its nextUpdate; default half of Validity.
	RepublishInterval Duration `json:"republishInterval"`
	// CoalesceWindow gathers the revocations made within it into one
	// rebuild; default 200ms.
	CoalesceWindow *Duration `json:"coalesceWindow,omitempty"`
	// URL is the base URL under which meshca's HTTP distribution point is
	// reachable (the /crl path of crl.listen, else of the ops listener, e.g.
	// http://meshca.istio-system.svc:15016/crl). When set, every issued
	// certificate carries cRLDistributionPoints <url>/gen-<id>.crl and each
	// full CRL a FreshestCRL <url>/<scope>-delta.crl. Empty: neither.
	URL string `json:"url,omitempty"`
	// Listen, when set (e.g. ":15016"), serves the distribution point on a
	// listener of its own instead of the ops listener; point URL at it.
	// Relying parties (every workload of the mesh, once URL is in their
	// certificates) then never share the connections of the kubelet's
	// probes and Prometheus, which a few of them could otherwise hold.
	// It has the ops listener's limits (server.limits.ops*).
	Listen string `json:"listen,omitempty"`
	// RootCRL is where the root's CRL comes from when meshca does not hold
	// the root key (root.file.cacertsDir); Istio needs a CRL for every CA
	// in cert-chain.pem. With Vault the mount's CRL is used.
	RootCRL RootCRLConfig `json:"rootCRL,omitzero"`
}

// RootCRLConfig locates an external root CRL (PEM or DER).
type RootCRLConfig struct {
	// File is a path to the root's CRL, re-read every Refresh.
	File string `json:"file,omitempty"`
	// URL is an http(s) URL of the root's CRL, fetched every Refresh.
	URL string `json:"url,omitempty"`
	// Refresh is how often File or URL is read; default 1h.
	Refresh Duration `json:"refresh,omitzero"`
}

// CoalesceWindowOrDefault is crl.coalesceWindow with its default applied.
func (c CRLConfig) CoalesceWindowOrDefault() time.Duration {
	if c.CoalesceWindow == nil {
		return DefaultCRLCoalesceWindow
	}
	return c.CoalesceWindow.Duration
}

// BaseURL is crl.url without a trailing slash.
func (c CRLConfig) BaseURL() string { return strings.TrimRight(c.URL, "/") }

func (c *CRLConfig) init() {
	if c.Validity.Duration == 0 {
		c.Validity.Duration = DefaultCRLValidity
	}
	if c.RepublishInterval.Duration == 0 {
		c.RepublishInterval.Duration = c.Validity.Duration / 2
	}
	if c.RootCRL.Refresh.Duration == 0 {
		c.RootCRL.Refresh.Duration = DefaultRootCRLRefresh
	}
}

func (c CRLConfig) validate(r RootConfig, s ServerConfig, bundle string, add func(string, string, ...any)) {
	if c.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			add("crl.listen", "%q is not host:port (e.g. :15016); leave it empty to serve the CRLs on server.opsListen", c.Listen)
		}
		for _, kv := range [][2]string{{"server.listen", s.Listen}, {"server.opsListen", s.OpsListen}, {"server.adminListen", s.AdminListen}, {"bundleEndpoint.address", bundle}} {
			if sameListener(kv[1], c.Listen) {
				add("crl.listen", "%q is also %s (%q); give the CRLs their own port", c.Listen, kv[0], kv[1])
			}
		}
		// The URL of a configuration from before crl.listen: certificates
		// would name a path the ops listener no longer serves.
		if u, err := url.Parse(c.URL); err == nil && u.Port() != "" {
			if _, ops, err := net.SplitHostPort(s.OpsListen); err == nil && samePort(u.Port(), ops) {
				add("crl.url", "%q names server.opsListen's port %s, but crl.listen %q serves the CRLs; point crl.url at crl.listen's port, or empty crl.listen to serve them on the ops port", c.URL, ops, c.Listen)
			}
		}
	}
	v := c.Validity.Duration
	if v < MinCRLValidity {
		add("crl.validity", "%s is too short; use at least %s (default %s): relying parties must be able to fetch a CRL before it expires", v, MinCRLValidity, DefaultCRLValidity)
	}
	if ri := c.RepublishInterval.Duration; ri <= 0 || ri >= v {
		add("crl.republishInterval", "%s must be above 0 and below crl.validity %s, so that a new CRL is out well before nextUpdate (default: half of crl.validity)", ri, v)
	}
	if w := c.CoalesceWindowOrDefault(); w < 0 || w > MaxCRLCoalesceWindow {
		add("crl.coalesceWindow", "%s is out of range; use 0 (rebuild on every revocation) to %s (default %s)", w, MaxCRLCoalesceWindow, DefaultCRLCoalesceWindow)
	}
	if c.URL != "" && !httpURL(c.URL) {
		add("crl.url", "%q is not an http(s) URL without query or fragment; use the address of meshca's crl.listen (or ops) listener with the /crl path, e.g. http://meshca.istio-system.svc:15016/crl", c.URL)
	}
	rc := c.RootCRL
	if rc.File == "" && rc.URL == "" {
		return
	}
	switch {
	case r.Source == RootSourceVault:
		add("crl.rootCRL", "must be empty with root.source vault: meshca publishes the CRL of the Vault mount")
	case r.File.Minted():
		add("crl.rootCRL", "must be empty with root.file.rootCert and rootKey: meshca holds the root key and builds the root's CRL itself")
	case rc.File != "" && rc.URL != "":
		add("crl.rootCRL", "set file or url, not both")
	}
	if rc.URL != "" && !httpURL(rc.URL) {
		add("crl.rootCRL.url", "%q is not an http(s) URL", rc.URL)
	}
	if rc.Refresh.Duration < time.Minute {
		add("crl.rootCRL.refresh", "%s is too short; use at least 1m (default %s)", rc.Refresh.Duration, DefaultRootCRLRefresh)
	}
}

// sameListener reports whether listen addresses a and b would take the same
// port: the same port (not 0) on the same host or on a wildcard host.
func sameListener(a, b string) bool {
	ha, pa, errA := net.SplitHostPort(a)
	hb, pb, errB := net.SplitHostPort(b)
	if errA != nil || errB != nil || !samePort(pa, pb) {
		return false
	}
	wild := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return ha == hb || wild(ha) || wild(hb)
}

// samePort reports whether decimal ports a and b are the same port other
// than 0 ("015014" is 15014).
func samePort(a, b string) bool {
	pa, errA := strconv.ParseUint(a, 10, 16)
	pb, errB := strconv.ParseUint(b, 10, 16)
	return errA == nil && errB == nil && pa == pb && pa != 0
}

func httpURL(s string) bool {
	p, err := url.Parse(s)
	return err == nil && (p.Scheme == "http" || p.Scheme == "https") && p.Host != "" && p.RawQuery == "" && p.Fragment == "" && p.User == nil
}

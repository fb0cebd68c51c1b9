package policy

import (
	"crypto/elliptic"
	"crypto/x509"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/caerr"
)

// TestRule_IdentityPatternsAreSegmentAware: "*" is exactly one whole path
// segment, "**" one or more trailing segments; a "*" inside a segment is
// refused when the rule is built, so it can never match by string prefix.
func TestRule_IdentityPatternsAreSegmentAware(t *testing.T) {
	tests := []struct {
		pattern string
		id      string
		match   bool
	}{
		// The bug: a plain string prefix let ns/gw* admit ns/gw-evil.
		{"spiffe://cluster.local/ns/gw*", "spiffe://cluster.local/ns/gw-evil", false},
		{"spiffe://cluster.local/ns/*gw", "spiffe://cluster.local/ns/evil-gw", false},
		{"spiffe://cluster.local/ns/g*w", "spiffe://cluster.local/ns/g-evil-w", false},
		{"spiffe://cluster.local/ns/istio-system/sa/*", "spiffe://cluster.local/ns/istio-system/sa/ingress", true},
		// "*" is one segment: it no longer reaches deeper paths.
		{"spiffe://cluster.local/ns/istio-system/*", "spiffe://cluster.local/ns/istio-system/sa/ingress", false},
		{"spiffe://cluster.local/ns/istio-system/*", "spiffe://cluster.local/ns/istio-system/gw", true},
		{"spiffe://cluster.local/ns/*/sa/ingress", "spiffe://cluster.local/ns/gw/sa/ingress", true},
		{"spiffe://cluster.local/ns/*/sa/ingress", "spiffe://cluster.local/ns/gw/sa/ingress-evil", false},
		// "**" is a suffix of one or more segments.
		{"spiffe://cluster.local/ns/istio-system/**", "spiffe://cluster.local/ns/istio-system/sa/ingress", true},
		{"spiffe://cluster.local/ns/istio-system/**", "spiffe://cluster.local/ns/istio-system", false},
		{"spiffe://cluster.local/ns/istio-system/**", "spiffe://cluster.local/ns/istio-system-evil/sa/x", false},
		{"spiffe://cluster.local/ns/**/sa/x", "spiffe://cluster.local/ns/a/sa/x", false},
	}
	for _, tc := range tests {
		t.Run(tc.pattern+" vs "+tc.id, func(t *testing.T) {
			r, err := NewRule("gw", []string{tc.pattern}, nil, nil, false, 0)
			if err == nil {
				require.Equal(t, tc.match, r.Matches(mustURL(t, tc.id)), "%s vs %s", tc.pattern, tc.id)
				return
			}
			require.False(t, tc.match, "pattern %s refused: %v", tc.pattern, err)
			require.ErrorContains(t, err, "policy gw: ")
		})
	}
	for _, bad := range []string{"spiffe://cluster.local/ns/gw*", "spiffe://cluster.local/ns/*gw", "spiffe://cluster.local/ns/g*w", "spiffe://cluster.local/**/x"} {
		_, err := NewRule("gw", []string{bad}, nil, nil, false, 0)
		require.Error(t, err, "%s is ambiguous and must be refused", bad)
	}
}

// TestEngine_NeverAdmitsAWildcardDNSLabel: a DNS SAN whose label is "*"
// asks for a wildcard certificate; no policy admits one, not even a rule
// whose pattern "*.example.com" would match the text.
func TestEngine_NeverAdmitsAWildcardDNSLabel(t *testing.T) {
	is := validIssuer(t)
	e := testEngine(func(o *Options) { o.Rules = []*Rule{gatewayRule(t, 0)} })
	for _, name := range []string{"*.example.com", "a*.example.com", "*"} {
		_, err := e.Template(&Request{Identity: mustURL(t, gateway), CSR: gatewayCSR(t, name)}, is.cert)
		requireCAErr(t, err, caerr.InvalidArgument, ReasonDNSSAN)
	}
	exact, err := NewRule("exact", []string{gateway}, []string{"*.example.com", "gw.example.com"}, nil, true, 0)
	require.NoError(t, err)
	e = testEngine(func(o *Options) { o.Rules = []*Rule{exact} })
	csr := parsedCSR(t, ecKey(t, elliptic.P256()), &x509.CertificateRequest{URIs: urls(mustURL(t, gateway))})
	csr.Subject.CommonName = "*.example.com"
	_, err = e.Template(&Request{Identity: mustURL(t, gateway), CSR: csr}, is.cert)
	requireCAErr(t, err, caerr.InvalidArgument, ReasonCommonName)
}

// TestEngine_IdentityFollowsTheSPIFFESpec: the authenticated identity is
// checked by the SPIFFE ID rules (SPIFFE-ID §2), not just split on "/".
func TestEngine_IdentityFollowsTheSPIFFESpec(t *testing.T) {
	v := spiffeIdentity{trustDomain: testTrustDomain}
	for name, id := range map[string]*url.URL{
		"space in path":   {Scheme: "spiffe", Host: "cluster.local", Path: "/ns/a b/sa/x"},
		"tilde in path":   {Scheme: "spiffe", Host: "cluster.local", Path: "/ns/a~b/sa/x"},
		"non-ASCII path":  {Scheme: "spiffe", Host: "cluster.local", Path: "/ns/ü/sa/x"},
		"escaped slash":   {Scheme: "spiffe", Host: "cluster.local", Path: "/ns/a/b", RawPath: "/ns/a%2Fb"},
		"trailing slash":  {Scheme: "spiffe", Host: "cluster.local", Path: "/ns/a/"},
		"3000-byte path":  {Scheme: "spiffe", Host: "cluster.local", Path: "/" + longSegment(3000)},
		"empty query (?)": {Scheme: "spiffe", Host: "cluster.local", Path: "/ns/a", ForceQuery: true},
	} {
		t.Run(name, func(t *testing.T) {
			requireCAErr(t, v.Validate(&Request{Identity: id}), caerr.InvalidArgument, ReasonIdentityInvalid)
		})
	}
}

func longSegment(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a'
	}
	return string(b)
}

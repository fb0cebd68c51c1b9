package identity_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/identity"
)

var td = spiffeid.RequireTrustDomainFromString("cluster.local")

// TestParse_SPIFFEIDCharacterRules is the one table of SPIFFE-ID.md's rules
// (§2 scheme, query and fragment, §2.1 trust domain, §2.2 path, §2.3 length).
func TestParse_SPIFFEIDCharacterRules(t *testing.T) {
	maxPath := "/" + strings.Repeat("a", identity.MaxIDLength-len("spiffe://cluster.local/"))
	tests := []struct {
		name, id string
		ok       bool
	}{
		{"workload", "spiffe://cluster.local/ns/default/sa/app", true},
		{"trust domain only", "spiffe://cluster.local", true},
		{"trust domain chars", "spiffe://a-b_c.9/x", true},
		{"path chars", "spiffe://cluster.local/AZaz09.-_/x", true},
		{"dots inside a segment", "spiffe://cluster.local/..a/a..", true},
		{"2048 bytes", "spiffe://cluster.local" + maxPath, true},

		{"empty", "", false},
		{"upper-case scheme", "SPIFFE://cluster.local/x", false},
		{"mixed-case scheme", "Spiffe://cluster.local/x", false},
		{"other scheme", "https://cluster.local/x", false},
		{"no authority", "spiffe:cluster.local/x", false},
		{"no trust domain", "spiffe:///x", false},
		{"upper-case trust domain", "spiffe://Cluster.local/x", false},
		{"trust domain with +", "spiffe://a+b.local/x", false},
		{"trust domain with ~", "spiffe://a~b.local/x", false},
		{"non-ASCII trust domain", "spiffe://café.local/x", false},
		{"percent in trust domain", "spiffe://a%41.local/x", false},
		{"port", "spiffe://cluster.local:443/x", false},
		{"userinfo", "spiffe://me@cluster.local/x", false},
		{"query", "spiffe://cluster.local/x?a=b", false},
		{"empty query", "spiffe://cluster.local/x?", false},
		{"fragment", "spiffe://cluster.local/x#f", false},
		{"trailing slash", "spiffe://cluster.local/x/", false},
		{"root slash", "spiffe://cluster.local/", false},
		{"empty segment", "spiffe://cluster.local/ns//sa/x", false},
		{"dot segment", "spiffe://cluster.local/ns/./x", false},
		{"dot-dot segment", "spiffe://cluster.local/ns/../x", false},
		{"percent-escape in path", "spiffe://cluster.local/ns/a%2Fb", false},
		{"space in path", "spiffe://cluster.local/a b", false},
		{"tilde in path", "spiffe://cluster.local/a~b", false},
		{"colon in path", "spiffe://cluster.local/a:b", false},
		{"at in path", "spiffe://cluster.local/a@b", false},
		{"star in path", "spiffe://cluster.local/a*", false},
		{"non-ASCII path", "spiffe://cluster.local/ü", false},
		{"2049 bytes", "spiffe://cluster.local" + maxPath + "a", false},
		{"256-byte trust domain", "spiffe://" + strings.Repeat("a", 256) + "/x", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, err := identity.Parse(tc.id)
			if !tc.ok {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.id, id.String())
		})
	}
}

func TestTrustDomain_Rules(t *testing.T) {
	for name, ok := range map[string]bool{
		"cluster.local": true, "a-b_c.9": true, strings.Repeat("a", 255): true,
		"": false, "Cluster.local": false, "a+b": false, "café.local": false, "td:443": false,
		"spiffe://cluster.local": false, "a/b": false, "a b": false, strings.Repeat("a", 256): false,
	} {
		_, err := identity.TrustDomain(name)
		require.Equal(t, ok, err == nil, "%q: %v", name, err)
	}
}

func TestFromURL_ChecksTheCanonicalText(t *testing.T) {
	for s, ok := range map[string]bool{
		"spiffe://cluster.local/ns/a/sa/b":      true,
		"spiffe://cluster.local/ns/a%2Fsa/sa/b": false, // escaped slash stays escaped
		"spiffe://cluster.local/ns/a%41/sa/b":   false,
		"spiffe://cluster.local/ns/a/sa/b?x=1":  false,
		"spiffe://cluster.local/ns/a/sa/b#x":    false,
		"spiffe://x@cluster.local/ns/a":         false,
		"spiffe://cluster.local:1/ns/a":         false,
	} {
		u, err := url.Parse(s)
		require.NoError(t, err)
		_, err = identity.FromURL(u)
		require.Equal(t, ok, err == nil, "%s: %v", s, err)
	}
	_, err := identity.FromURL(&url.URL{Scheme: "spiffe", Host: "cluster.local", Path: "/a b"})
	require.Error(t, err)
	_, err = identity.FromURL(nil)
	require.Error(t, err)
}

func TestWorkload_NeedsTrustDomainAndPath(t *testing.T) {
	id, err := identity.Workload("spiffe://cluster.local/ns/a/sa/b", td)
	require.NoError(t, err)
	require.Equal(t, "/ns/a/sa/b", id.Path())

	_, err = identity.Workload("spiffe://other.local/ns/a/sa/b", td)
	var foreign *identity.ForeignError
	require.ErrorAs(t, err, &foreign)
	require.EqualError(t, err, `SPIFFE ID "spiffe://other.local/ns/a/sa/b" is not in trust domain cluster.local`)

	_, err = identity.Workload("spiffe://cluster.local", td)
	require.EqualError(t, err, `SPIFFE ID "spiffe://cluster.local" has no path; a workload's ID needs one (X509-SVID §3.1)`)

	_, err = identity.WorkloadURL(&url.URL{Scheme: "spiffe", Host: "cluster.local", Path: "/x"}, td)
	require.NoError(t, err)
}

func TestParseKubernetes(t *testing.T) {
	k, err := identity.ParseKubernetes("spiffe://cluster.local/ns/default/sa/app.v1")
	require.NoError(t, err)
	require.Equal(t, "default", k.Namespace)
	require.Equal(t, "app.v1", k.ServiceAccount)
	require.Equal(t, "spiffe://cluster.local/ns/default/sa/app.v1", k.ID.String())

	for _, s := range []string{
		"spiffe://cluster.local/ns/default/sa/app/x",
		"spiffe://cluster.local/namespace/default/sa/app",
		"spiffe://cluster.local/ns/Default/sa/app", // not a DNS-1123 label
		"spiffe://cluster.local/ns/a.b/sa/app",     // a namespace is a label, not a subdomain
		"spiffe://cluster.local/ns/default/sa/App",
		"spiffe://cluster.local/ns/default/sa/_app",
		"spiffe://cluster.local/ns/default",
		"SPIFFE://cluster.local/ns/default/sa/app",
	} {
		_, err := identity.ParseKubernetes(s)
		require.Error(t, err, s)
	}
}

func TestForServiceAccount(t *testing.T) {
	k, err := identity.ForServiceAccount(td, "istio-system", "ztunnel")
	require.NoError(t, err)
	require.Equal(t, "spiffe://cluster.local/ns/istio-system/sa/ztunnel", k.ID.String())
	for _, bad := range [][2]string{{"a/b", "c"}, {"", "c"}, {"a", ".."}, {"A", "b"}, {"a", "b c"}} {
		_, err := identity.ForServiceAccount(td, bad[0], bad[1])
		require.Error(t, err, "%q", bad)
	}
	_, err = identity.ForServiceAccount(spiffeid.TrustDomain{}, "a", "b")
	require.Error(t, err)
}

func TestQuote_BoundsEchoedInput(t *testing.T) {
	require.Equal(t, `"a\nb"`, identity.Quote("a\nb"))
	long := strings.Repeat("x", 1000)
	require.Equal(t, `"`+strings.Repeat("x", 256)+`"…`, identity.Quote(long))
}

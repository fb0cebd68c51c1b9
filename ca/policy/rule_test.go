package policy

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestNewRule_ParsesCIDRsAndKeepsFields(t *testing.T) {
	r, err := NewRule("gw", []string{gateway}, []string{"*.example.com"}, []string{"10.0.0.0/8", "fd00::/8"}, true, time.Hour)
	require.NoError(t, err)
	require.Equal(t, "gw", r.Name)
	require.Len(t, r.Identities, 1)
	require.Equal(t, gateway, r.Identities[0].String())
	require.Equal(t, []string{"*.example.com"}, r.DNSNames)
	require.True(t, r.AllowCommonName)
	require.Equal(t, time.Hour, r.MaxCertTTL)
	require.Len(t, r.IPRanges, 2)
	require.Equal(t, "10.0.0.0/8", r.IPRanges[0].String())
}

func TestNewRule_RejectsBadCIDRNamingPolicyAndValue(t *testing.T) {
	_, err := NewRule("gw", nil, nil, []string{"10.0.0.0/33"}, false, 0)
	require.EqualError(t, err, `policy gw: "10.0.0.0/33" is not a CIDR`)
}

func TestRule_MatchesExactIDsAndWholeSegmentWildcards(t *testing.T) {
	r, err := NewRule("r", []string{workload, "spiffe://cluster.local/ns/istio-system/sa/*"}, nil, nil, false, 0)
	require.NoError(t, err)
	require.True(t, r.Matches(mustURL(t, workload)))
	require.True(t, r.Matches(mustURL(t, "spiffe://cluster.local/ns/istio-system/sa/ingress")))
	require.False(t, r.Matches(mustURL(t, workload+"x")), "an exact ID is not a prefix")
	require.False(t, r.Matches(mustURL(t, "spiffe://cluster.local/ns/istio-systemx/sa/ingress")))
	require.False(t, r.Matches(mustURL(t, "spiffe://other.local/ns/istio-system/sa/ingress")))
}

func TestRule_AllowsDNS(t *testing.T) {
	r := &Rule{DNSNames: []string{"*.example.com", "Exact.Example.org"}}
	tests := map[string]bool{
		"a.example.com":       true,
		"A.EXAMPLE.COM":       true,
		"exact.example.org":   true,
		"a.b.example.com":     false,
		"example.com":         false,
		".example.com":        false,
		"aexample.com":        false,
		"a.exact.example.org": false,
	}
	for name, want := range tests {
		require.Equal(t, want, r.allowsDNS(name), name)
	}
	var none *Rule
	require.False(t, none.allowsDNS("a.example.com"), "no rule allows nothing")
}

func TestRule_AllowsIP(t *testing.T) {
	r, err := NewRule("r", nil, nil, []string{"10.0.0.0/8"}, false, 0)
	require.NoError(t, err)
	require.True(t, r.allowsIP(net.ParseIP("10.255.0.1")))
	require.False(t, r.allowsIP(net.ParseIP("11.0.0.1")))
	var none *Rule
	require.False(t, none.allowsIP(net.ParseIP("10.0.0.1")))
}

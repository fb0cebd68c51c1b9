package config_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/config"
)

// TestValidate_PolicyIdentityPatterns: a policy's identities are SPIFFE IDs
// of the mesh's trust domain in which "*" is one whole path segment and "**"
// only ends a pattern; anything else is refused with a message that says how
// to fix it.
func TestValidate_PolicyIdentityPatterns(t *testing.T) {
	tests := map[string]string{ // pattern -> "" (accepted) or the expected message
		"spiffe://cluster.local/ns/gw/sa/ingress": "",
		"spiffe://cluster.local/ns/gw/sa/*":       "",
		"spiffe://cluster.local/ns/*/sa/ingress":  "",
		"spiffe://cluster.local/gateways/**":      "",

		"spiffe://cluster.local/ns/gw*":      `issuance.policies[0].identities[0]: "spiffe://cluster.local/ns/gw*" has "gw*": * must be a whole path segment`,
		"spiffe://cluster.local/ns/*gw":      `has "*gw": * must be a whole path segment`,
		"spiffe://cluster.local/ns/g*w":      `has "g*w": * must be a whole path segment`,
		"spiffe://cluster.local/**/sa/x":     `has ** before its last segment`,
		"spiffe://cluster.local":             `has no path, and a workload's ID always has one; write spiffe://cluster.local/** to match`,
		"spiffe://cluster.local/ns//sa/x":    `path cannot contain empty segments`,
		"spiffe://cluster.local/ns/../sa/x":  `path cannot contain dot segments`,
		"spiffe://cluster.local/ns/a b":      `path segment characters are limited`,
		"spiffe://cluster.local/ns/a?b":      `path segment characters are limited`,
		"spiffe://Cluster.local/ns/a/sa/b":   `trust domain "Cluster.local" is invalid`,
		"spiffe://cluster.local:1/ns/a/sa/b": `trust domain "cluster.local:1" is invalid`,
		"spiffe://other.example/ns/a/sa/b":   `is in trust domain other.example; meshca issues only in cluster.local`,
		"SPIFFE://cluster.local/ns/a/sa/b":   `it must start with spiffe:// (lower case)`,
		"https://cluster.local/ns/a/sa/b":    `it must start with spiffe://`,
	}
	for pattern, want := range tests {
		t.Run(pattern, func(t *testing.T) {
			c, err := config.Parse([]byte(mergeYAML(t, minimal,
				"issuance: {policies: [{name: gw, identities: ['"+pattern+"']}]}")))
			require.NoError(t, err)
			err = c.Validate()
			if want == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err, "%s must be refused", pattern)
			require.Contains(t, err.Error(), want)
			require.True(t, strings.HasPrefix(err.Error(), "issuance.policies[0].identities[0]: "), err.Error())
			require.Len(t, strings.Split(err.Error(), "\n"), 1, "exactly one problem: %v", err)
		})
	}
}

// TestValidate_PolicyDNSNamePatterns: "*" in a policy's DNS name is only the
// whole left-most label ("*.example.com" = exactly one label).
func TestValidate_PolicyDNSNamePatterns(t *testing.T) {
	tests := map[string]string{
		"gw.example.com":  "",
		"*.example.com":   "",
		"a*.example.com":  `"a*.example.com": * may only be the whole left-most label`,
		"a.*.example.com": `"a.*.example.com": * may only be the whole left-most label`,
		"*.*.example.com": `"*.*.example.com": * may only be the whole left-most label`,
		"*":               `"*": * may only be the whole left-most label`,
		"*.":              `"*.": * may only be the whole left-most label`,
	}
	for name, want := range tests {
		t.Run(name, func(t *testing.T) {
			c, err := config.Parse([]byte(mergeYAML(t, minimal,
				"issuance: {policies: [{name: gw, identities: ['spiffe://cluster.local/ns/gw/sa/x'], dnsNames: ['"+name+"']}]}")))
			require.NoError(t, err)
			err = c.Validate()
			if want == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err, "%s must be refused", name)
			require.Contains(t, err.Error(), "issuance.policies[0].dnsNames[0]: "+want)
		})
	}
}

// TestValidate_TrustDomainFollowsTheSPIFFESpec: lower-case letters, digits,
// '.', '-' and '_', at most 255 bytes (SPIFFE-ID §2.1, §2.3).
func TestValidate_TrustDomainFollowsTheSPIFFESpec(t *testing.T) {
	for td, ok := range map[string]bool{
		"cluster.local": true, "a-b_c.9": true,
		"café.local": false, "a+b.local": false, "a~b": false, "a%41": false, "a#b": false, "a?b": false,
		"a!b": false, strings.Repeat("a", 256): false, "Cluster.local": false, "a:1": false,
	} {
		c, err := config.Parse([]byte(mergeYAML(t, minimal, "trustDomain: '"+td+"'")))
		require.NoError(t, err)
		err = c.Validate()
		if ok {
			require.NoError(t, err, td)
			continue
		}
		require.Error(t, err, "trust domain %q must be refused", td)
		require.Contains(t, err.Error(), "trustDomain: ")
	}
}

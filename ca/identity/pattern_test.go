package identity_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/identity"
)

func TestPattern_MatchesBySegment(t *testing.T) {
	tests := []struct {
		pattern, id string
		match       bool
	}{
		{"spiffe://td/ns/gw/sa/ingress", "spiffe://td/ns/gw/sa/ingress", true},
		{"spiffe://td/ns/gw/sa/ingress", "spiffe://td/ns/gw/sa/ingressx", false},
		{"spiffe://td/ns/gw/sa/ingress", "spiffe://td/ns/gw/sa/ingress/x", false},
		{"spiffe://td/ns/gw/sa/ingress", "spiffe://other/ns/gw/sa/ingress", false},
		{"spiffe://td/ns/gw/sa/ingress", "spiffe://td/ns/gw/sa/Ingress", false},

		{"spiffe://td/ns/gw/sa/*", "spiffe://td/ns/gw/sa/ingress", true},
		{"spiffe://td/ns/gw/sa/*", "spiffe://td/ns/gw/sa/ingress/x", false},
		{"spiffe://td/ns/gw/sa/*", "spiffe://td/ns/gw/sa", false},
		{"spiffe://td/ns/gw/*", "spiffe://td/ns/gw-evil", false},
		{"spiffe://td/ns/gw/*", "spiffe://td/ns/gw/x", true},
		{"spiffe://td/ns/*/sa/ingress", "spiffe://td/ns/a/sa/ingress", true},
		{"spiffe://td/ns/*/sa/ingress", "spiffe://td/ns/a/b/sa/ingress", false},
		{"spiffe://td/ns/*/sa/ingress", "spiffe://other/ns/a/sa/ingress", false},

		{"spiffe://td/gateways/**", "spiffe://td/gateways/a", true},
		{"spiffe://td/gateways/**", "spiffe://td/gateways/a/b/c", true},
		{"spiffe://td/gateways/**", "spiffe://td/gateways", false},
		{"spiffe://td/gateways/**", "spiffe://td/gateways-evil/a", false},
		{"spiffe://td/**", "spiffe://td/x", true},
		{"spiffe://td/**", "spiffe://td", false},
		{"spiffe://td/*/sa/**", "spiffe://td/ns/sa/x/y", true},
	}
	for _, tc := range tests {
		p, err := identity.ParsePattern(tc.pattern)
		require.NoError(t, err, tc.pattern)
		id, err := identity.Parse(tc.id)
		require.NoError(t, err, tc.id)
		require.Equal(t, tc.match, p.Matches(id), "%s vs %s", tc.pattern, tc.id)
	}
}

func TestParsePattern_RefusesAmbiguousOrInvalidPatterns(t *testing.T) {
	tests := map[string]string{
		"spiffe://td/ns/gw*":    `"spiffe://td/ns/gw*" has "gw*": * must be a whole path segment`,
		"spiffe://td/ns/*gw":    `"spiffe://td/ns/*gw" has "*gw": * must be a whole path segment`,
		"spiffe://td/ns/g*w":    `"spiffe://td/ns/g*w" has "g*w": * must be a whole path segment`,
		"spiffe://td/ns/***":    `"spiffe://td/ns/***" has "***": * must be a whole path segment`,
		"spiffe://td/**/sa/x":   `"spiffe://td/**/sa/x" has ** before its last segment`,
		"spiffe://*.td/ns/x":    `"spiffe://*.td/ns/x" has a wildcard in the trust domain`,
		"spiffe://td":           `"spiffe://td" has no path, and a workload's ID always has one; write spiffe://td/** to match`,
		"spiffe://td/":          `"spiffe://td/" has no path`,
		"spiffe://td/ns//x":     `"spiffe://td/ns//x" has path segment "": path cannot contain empty segments`,
		"spiffe://td/ns/../x":   `"spiffe://td/ns/../x" has path segment "..": path cannot contain dot segments`,
		"spiffe://td/ns/a b":    `"spiffe://td/ns/a b" has path segment "a b": path segment characters are limited`,
		"spiffe://TD/ns/x":      `"spiffe://TD/ns/x": trust domain "TD" is invalid`,
		"spiffe://td:1/ns/x":    `"spiffe://td:1/ns/x": trust domain "td:1" is invalid`,
		"SPIFFE://td/ns/x":      `"SPIFFE://td/ns/x" is not a SPIFFE ID pattern: it must start with spiffe:// (lower case)`,
		"td/ns/x":               `"td/ns/x" is not a SPIFFE ID pattern`,
		"spiffe://td/ns/x?q":    `"spiffe://td/ns/x?q" has path segment "x?q"`,
		"spiffe://td/ns/x#f":    `"spiffe://td/ns/x#f" has path segment "x#f"`,
		"spiffe://user@td/ns/x": `"spiffe://user@td/ns/x": trust domain "user@td" is invalid`,
		"spiffe:///ns/x":        `"spiffe:///ns/x": trust domain "" is invalid`,
	}
	for pattern, want := range tests {
		_, err := identity.ParsePattern(pattern)
		require.ErrorContains(t, err, want, pattern)
	}
}

func TestPattern_KeepsTextAndTrustDomain(t *testing.T) {
	p, err := identity.ParsePattern("spiffe://cluster.local/ns/*/sa/x")
	require.NoError(t, err)
	require.Equal(t, "spiffe://cluster.local/ns/*/sa/x", p.String())
	require.Equal(t, "cluster.local", p.TrustDomain().Name())
}

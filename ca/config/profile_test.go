package config_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/profile"
)

func TestDefaults_CatalystCAWithMLDSA65IssuingCatalystLeaves(t *testing.T) {
	c := config.Defaults(t.TempDir())
	require.Equal(t, profile.Catalyst, c.Intermediate.Profile)
	require.Equal(t, "ML-DSA-65", c.Intermediate.PQAlgorithm)
	require.Equal(t, profile.Catalyst, c.Issuance.Profile)
	require.NoError(t, c.Validate())
}

func TestParse_ProfileDefaultsFollowTheIntermediateProfile(t *testing.T) {
	cases := map[string]struct {
		yaml  string
		pqAlg string
		leaf  profile.Name
		ca    profile.Name
	}{
		"classical": {"intermediate: {profile: classical}", "", profile.Classical, profile.Classical},
		"composite": {"intermediate: {profile: composite}", "MLDSA65-ECDSA-P256-SHA512", profile.Composite, profile.Composite},
		"mldsa":     {"intermediate: {profile: mldsa}", "ML-DSA-65", profile.MLDSA, profile.MLDSA},
		"catalyst with ML-DSA-87 issuing classical leaves": {
			"intermediate: {profile: catalyst, pqAlgorithm: ML-DSA-87}\nissuance: {profile: classical}", "ML-DSA-87", profile.Classical, profile.Catalyst,
		},
		"composite with MLDSA44": {
			"intermediate: {profile: composite, pqAlgorithm: MLDSA44-ECDSA-P256-SHA256}", "MLDSA44-ECDSA-P256-SHA256", profile.Composite, profile.Composite,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c, err := config.Parse([]byte(mergeYAML(t, minimal, tc.yaml)))
			require.NoError(t, err)
			require.NoError(t, c.Validate())
			require.Equal(t, tc.ca, c.Intermediate.Profile)
			require.Equal(t, tc.pqAlg, c.Intermediate.PQAlgorithm)
			require.Equal(t, tc.leaf, c.Issuance.Profile)
		})
	}
}

func TestValidate_ProfileMistakesNameTheirKeyAndTheFix(t *testing.T) {
	cases := map[string]struct{ yaml, want string }{
		"unknown CA profile": {"intermediate: {profile: hybrid}",
			`intermediate.profile: "hybrid" is not supported; use one of [catalyst classical composite mldsa] (default catalyst)`},
		"composite algorithm for a catalyst CA": {"intermediate: {pqAlgorithm: MLDSA65-ECDSA-P256-SHA512}",
			`intermediate.pqAlgorithm: "MLDSA65-ECDSA-P256-SHA512" is not supported by the catalyst profile; use one of [ML-DSA-65 ML-DSA-44 ML-DSA-87]`},
		"ML-DSA algorithm for a composite CA": {"intermediate: {profile: composite, pqAlgorithm: ML-DSA-65}",
			`intermediate.pqAlgorithm: "ML-DSA-65" is not supported by the composite profile; use one of [MLDSA65-ECDSA-P256-SHA512 MLDSA44-ECDSA-P256-SHA256]`},
		"PQ algorithm for a classical CA": {"intermediate: {profile: classical, pqAlgorithm: ML-DSA-65}",
			`intermediate.pqAlgorithm: "ML-DSA-65" is set, but a classical CA holds no post-quantum key; remove it or choose another intermediate.profile`},
		"composite leaves from a catalyst CA": {"issuance: {profile: composite}",
			"issuance.profile: a CA of profile catalyst cannot issue composite certificates (it can issue [catalyst classical]); set issuance.profile to catalyst or change intermediate.profile"},
		"catalyst leaves from an mldsa CA": {"intermediate: {profile: mldsa}\nissuance: {profile: catalyst}",
			"issuance.profile: a CA of profile mldsa cannot issue catalyst certificates (it can issue [mldsa]); set issuance.profile to mldsa or change intermediate.profile"},
		"unknown leaf profile": {"issuance: {profile: pq}",
			`issuance.profile: leaf profile "pq" is not one of [catalyst classical composite mldsa]; set issuance.profile to catalyst or change intermediate.profile`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c, err := config.Parse([]byte(mergeYAML(t, minimal, tc.yaml)))
			require.NoError(t, err)
			err = c.Validate()
			require.Error(t, err)
			require.Len(t, strings.Split(err.Error(), "\n"), 1, "exactly one problem: %v", err)
			require.EqualError(t, err, tc.want)
		})
	}
}

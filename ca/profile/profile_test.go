package profile_test

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/pqc"
	"github.com/meshca/meshca/ca/profile"
)

func TestParse_AcceptsTheFourProfilesAndNamesThemOnError(t *testing.T) {
	for _, n := range []string{"classical", "catalyst", "composite", "mldsa"} {
		p, err := profile.Parse(n)
		require.NoError(t, err)
		require.Equal(t, profile.Name(n), p)
	}
	_, err := profile.Parse("hybrid")
	require.EqualError(t, err, `profile "hybrid" is not one of [catalyst classical composite mldsa]`)
	require.Equal(t, profile.Catalyst, profile.Default)
}

func TestPQAlgorithms_AreNamesPQCCanGenerate(t *testing.T) {
	require.Empty(t, profile.Classical.PQAlgorithms())
	require.Equal(t, "", profile.Classical.DefaultPQAlgorithm())
	require.Equal(t, []string{"ML-DSA-65", "ML-DSA-44", "ML-DSA-87"}, profile.Catalyst.PQAlgorithms())
	require.Equal(t, []string{"ML-DSA-65", "ML-DSA-44", "ML-DSA-87"}, profile.MLDSA.PQAlgorithms())
	require.Equal(t, []string{"MLDSA65-ECDSA-P256-SHA512", "MLDSA44-ECDSA-P256-SHA256"}, profile.Composite.PQAlgorithms())
	for _, p := range profile.All {
		for _, alg := range p.PQAlgorithms() {
			require.Contains(t, pqc.SigningAlgorithms(), alg)
		}
	}
}

func TestCheckLeaf_CatalystIssuesCatalystOrClassicalOthersOnlyTheirOwn(t *testing.T) {
	allowed := map[profile.Name][]profile.Name{
		profile.Catalyst:  {profile.Catalyst, profile.Classical},
		profile.Classical: {profile.Classical},
		profile.Composite: {profile.Composite},
		profile.MLDSA:     {profile.MLDSA},
	}
	for ca, leaves := range allowed {
		require.Equal(t, leaves[0], ca.DefaultLeaf())
		for _, leaf := range profile.All {
			err := ca.CheckLeaf(leaf)
			if slices.Contains(leaves, leaf) {
				require.NoError(t, err, "%s CA, %s leaf", ca, leaf)
			} else {
				require.Error(t, err, "%s CA, %s leaf", ca, leaf)
			}
		}
	}
	require.EqualError(t, profile.Composite.CheckLeaf(profile.Catalyst), "a CA of profile composite cannot issue catalyst certificates (it can issue [composite])")
	require.EqualError(t, profile.Catalyst.CheckLeaf("x"), `leaf profile "x" is not one of [catalyst classical composite mldsa]`)
}

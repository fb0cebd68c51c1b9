package rotation_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/rotation"
)

func TestIntermediateCA(t *testing.T) {
	require.Equal(t, "intermediate", rotation.IntermediateCA(""))
	require.Equal(t, "intermediate:gateways", rotation.IntermediateCA("gateways"))
	for _, ca := range []string{"root", "intermediate", "intermediate:gateways"} {
		require.True(t, rotation.KnownCA(ca), ca)
	}
	for _, ca := range []string{"", "intermediate:", "roots", "intermediatex", "bogus"} {
		require.False(t, rotation.KnownCA(ca), ca)
	}
}

package rules

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/rotation/inventory"
)

// every certificate of every ClusterTrustBundle in the cluster is
// judged as if it were meshca's CA: a public root in a trust-manager bundle
// (25-year life, 6 years left, e.g. DigiCert Global Root CA 2006-2031)
// raises CACertificateExpiring (warning at max(7d, 30% of 25y = 7.5y)).
func TestCAExpiry_ForeignClusterTrustBundleRootDoesNotAlert(t *testing.T) {
	year := 365 * 24 * time.Hour
	pub := inventory.Certificate{Kind: inventory.KindClusterTrustBundle, Name: "trust-manager-public-bundle",
		Cert: newCert(t, "DigiCert Global Root CA", 0x0a, T0.Add(-19*year), T0.Add(6*year))}
	src := &listSource{}
	src.set(nil, pub)
	rule := &CAExpiry{Sources: []inventory.Source{src}, Thresholds: DefaultThresholds()}
	got, err := rule.Evaluate(context.Background(), T0)
	require.NoError(t, err)
	require.Empty(t, got, "a public root with 6 years left in someone else's ClusterTrustBundle must not page meshca's operators")
}

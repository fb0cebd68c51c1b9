package authority_test

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/caerr"
)

// TestIssueServingSVID_IsAnX509SVIDThatGoSPIFFEVerifies: the serving
// certificate of an https_spiffe endpoint verifies as an X.509-SVID of the
// trust domain with go-spiffe (the independent verifier a federating
// client uses), carries the DNS names too, and is recorded under its ID.
func TestIssueServingSVID_IsAnX509SVIDThatGoSPIFFEVerifies(t *testing.T) {
	ca := newTestCA(t)
	id := spiffeid.RequireFromString("spiffe://cluster.local/ns/istio-system/sa/meshca")
	sv, err := ca.rt.Authority.IssueServingSVID(context.Background(), newKey(t, "p256").Public(), id, []string{"bundle.example.com"}, time.Hour)
	require.NoError(t, err)
	m := ca.rt.Authority.Material()
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	got, _, err := x509svid.Verify(sv.Chain, x509bundle.FromX509Authorities(td, m.Bundle.Roots))
	require.NoError(t, err)
	require.Equal(t, id, got)
	require.Equal(t, []string{"bundle.example.com"}, sv.Leaf.DNSNames)
	require.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, sv.Leaf.ExtKeyUsage)
	rec, err := ca.rt.Store.GetIssuance(context.Background(), hex.EncodeToString(sv.Leaf.SerialNumber.Bytes()))
	require.NoError(t, err)
	require.Equal(t, id.String(), rec.Identity)
	require.Equal(t, "serving", rec.Profile)

	_, err = ca.rt.Authority.IssueServingSVID(context.Background(), newKey(t, "p256").Public(), spiffeid.ID{}, nil, time.Hour)
	require.Equal(t, caerr.InvalidArgument, caerr.CodeOf(err))
}

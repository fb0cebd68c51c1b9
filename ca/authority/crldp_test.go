package authority_test

import (
	"context"
	"encoding/asn1"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/config"
)

// With crl.url set, every leaf carries cRLDistributionPoints (RFC 5280
// section 4.2.1.13) naming its generation's CRL on meshca's distribution
// point, after the static issuance.crlDistributionPoints: the exact
// extension bytes are checked against an independent encoding.
func TestSign_CRLDistributionPointOfTheGeneration(t *testing.T) {
	const base = "http://meshca.istio-system.svc:15014/crl"
	ca := newTestCA(t, func(c *config.Config) {
		c.CRL.URL = base + "/"
		c.Issuance.CRLDistributionPoints = []string{"http://static.example/crl"}
	})
	res, err := ca.rt.Authority.Sign(context.Background(), authority.Request{
		CSR: istioCSR(t, newKey(t, "p256"), workload), Identity: spiffe(t, workload), Requester: "test",
	})
	require.NoError(t, err)
	leaf, err := res.Leaf()
	require.NoError(t, err)
	gen := ca.rt.Authority.Material().Generation
	want := []string{"http://static.example/crl", fmt.Sprintf("%s/gen-%d.crl", base, gen)}
	require.Equal(t, want, leaf.CRLDistributionPoints)

	// CRLDistributionPoints ::= SEQUENCE OF DistributionPoint; each
	// DistributionPoint { distributionPoint [0] { fullName [0] { [6] URI } } }.
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, u := range want {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.Tag(6).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(u)) })
					})
				})
			})
		}
	})
	wantDER := b.BytesOrPanic()
	found := false
	for _, e := range leaf.Extensions {
		if e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 31}) {
			found = true
			require.False(t, e.Critical, "cRLDistributionPoints is non-critical (RFC 5280 4.2.1.13)")
			require.Equal(t, wantDER, e.Value)
		}
	}
	require.True(t, found, "the leaf has no cRLDistributionPoints extension")
}

// Without crl.url the leaf carries only the static points.
func TestSign_NoCRLURLNoGenerationPoint(t *testing.T) {
	ca := newTestCA(t)
	res, err := ca.rt.Authority.Sign(context.Background(), authority.Request{
		CSR: istioCSR(t, newKey(t, "p256"), workload), Identity: spiffe(t, workload), Requester: "test",
	})
	require.NoError(t, err)
	leaf, err := res.Leaf()
	require.NoError(t, err)
	require.Empty(t, leaf.CRLDistributionPoints)
}

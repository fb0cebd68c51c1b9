package admin

import (
	"context"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/authority"
)

// refusingSigner fails the test if the handler reaches it.
type refusingSigner struct{ t *testing.T }

func (s refusingSigner) Sign(context.Context, authority.Request) (*authority.Result, error) {
	s.t.Error("the request reached the authority")
	return nil, context.Canceled
}

// TestSign_NegativeTTLIsABadRequest: the admin API refuses a negative
// lifetime itself (400), as 'meshca sign' does before it calls; a client
// is never trusted to have checked.
func TestSign_NegativeTTLIsABadRequest(t *testing.T) {
	c, _, _ := serveAll(t, Options{Signer: refusingSigner{t}, TrustDomain: spiffeid.RequireTrustDomainFromString("cluster.local")})
	_, err := c.Sign(context.Background(), SignRequest{CSR: []byte("not read"), Identity: "spiffe://cluster.local/ns/default/sa/app", TTL: "-5h"})
	require.EqualError(t, err, "--ttl: -5h0m0s is negative: give the certificate's lifetime (e.g. 12h), or leave it out for issuance.defaultCertTTL")
}

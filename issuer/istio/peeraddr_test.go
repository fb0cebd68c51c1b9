package istio_test

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshca/meshca/issuer/authn"
)

// recordingAuthn records the credentials it is given and refuses them.
type recordingAuthn struct {
	mu  sync.Mutex
	got []authn.Credentials
}

func (r *recordingAuthn) Authenticate(_ context.Context, c authn.Credentials) (*authn.Caller, error) {
	r.mu.Lock()
	r.got = append(r.got, c)
	r.mu.Unlock()
	return nil, &authn.Failure{Authenticator: authn.TokenReview, Reason: authn.ReasonUnauthenticatedToken, Message: "no"}
}

// The authenticators learn the caller's IP address (without its port), so
// that the TokenReview authenticator can bound the reviews one address
// causes.
func TestCreateCertificate_CredentialsCarryThePeerIP(t *testing.T) {
	rec := &recordingAuthn{}
	e := newEnv(t, envOptions{authn: rec})
	cl := e.dial(t, nil)
	csr, _ := ztunnelCSR(t, spiffeID("default", "app"))
	_, err := cl.CreateCertificate(context.Background(), request(t, csr, 0, nil))
	require.Equal(t, codes.Unauthenticated, status.Code(err))
	rec.mu.Lock()
	defer rec.mu.Unlock()
	require.Len(t, rec.got, 1)
	require.Equal(t, "127.0.0.1", rec.got[0].PeerAddr)
}

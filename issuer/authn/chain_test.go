package authn_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/issuer/authn"
)

type failing struct{ name, reason, msg string }

func (f failing) Name() string { return f.name }
func (f failing) Authenticate(context.Context, authn.Credentials) (*authn.Caller, error) {
	return nil, &authn.Failure{Authenticator: f.name, Reason: f.reason, Message: f.msg}
}

// The chain's error names each failing authenticator once.
func TestChain_ErrorNamesEachAuthenticatorOnce(t *testing.T) {
	_, err := authn.Chain{failing{authn.TokenReview, "unauthenticated_token", "not authenticated"}}.
		Authenticate(context.Background(), authn.Credentials{BearerToken: "x"})
	require.EqualError(t, err, "token_review: not authenticated")
	require.Equal(t, "unauthenticated_token", authn.ReasonOf(err))

	_, err = authn.Chain{failing{authn.JWT, "unknown_key", "no key"}, failing{authn.TokenReview, "unauthenticated_token", "not authenticated"}}.
		Authenticate(context.Background(), authn.Credentials{BearerToken: "x"})
	require.EqualError(t, err, "jwt: no key; token_review: not authenticated")
}

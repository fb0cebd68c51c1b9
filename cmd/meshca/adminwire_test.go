package main

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/caerr"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/crl"
	"github.com/meshca/meshca/issuer/admin"
)

type errRevoker struct{ err error }

func (e errRevoker) Revoke(context.Context, crl.Request) ([]store.Revocation, error) {
	return nil, e.err
}

// Bad input is InvalidArgument (400) whichever layer refuses it; anything
// else stays an internal error.
func TestAdminRevoker_BadInputIsInvalidArgument(t *testing.T) {
	for name, tc := range map[string]struct {
		err     error
		invalid bool
	}{
		"revoker":  {fmt.Errorf("%w: serial \"0\" is zero", crl.ErrInvalidRequest), true},
		"store":    {fmt.Errorf("%w: serial \"00\" starts with a zero octet", store.ErrInvalid), true},
		"internal": {errors.New("disk full"), false},
	} {
		_, err := adminRevoker{r: errRevoker{tc.err}}.Revoke(context.Background(), admin.RevokeRequest{Serial: "0"})
		var ce *caerr.Error
		require.Equal(t, tc.invalid, errors.As(err, &ce), name)
		if tc.invalid {
			require.Equal(t, caerr.InvalidArgument, ce.Code, name)
			require.Equal(t, tc.err.Error(), ce.Message, name)
		} else {
			require.Same(t, tc.err, err, name)
		}
	}
}

package caerr_test

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	"github.com/meshca/meshca/ca/caerr"
)

func TestCode_MapsToExactlyOneGRPCCodeHTTPStatusAndName(t *testing.T) {
	tests := map[caerr.Code]struct {
		grpc codes.Code
		http int
		name string
	}{
		caerr.Internal:           {codes.Internal, http.StatusInternalServerError, "internal"},
		caerr.InvalidArgument:    {codes.InvalidArgument, http.StatusBadRequest, "invalid_argument"},
		caerr.Unauthenticated:    {codes.Unauthenticated, http.StatusUnauthorized, "unauthenticated"},
		caerr.PermissionDenied:   {codes.PermissionDenied, http.StatusForbidden, "permission_denied"},
		caerr.Unavailable:        {codes.Unavailable, http.StatusServiceUnavailable, "unavailable"},
		caerr.ResourceExhausted:  {codes.ResourceExhausted, http.StatusTooManyRequests, "resource_exhausted"},
		caerr.FailedPrecondition: {codes.FailedPrecondition, http.StatusConflict, "failed_precondition"},
		caerr.NotFound:           {codes.NotFound, http.StatusNotFound, "not_found"},
	}
	// Every declared code is in the table: the codes are iota from Internal
	// to NotFound.
	require.Len(t, tests, int(caerr.NotFound)+1)
	for code, want := range tests {
		t.Run(want.name, func(t *testing.T) {
			require.Equal(t, want.grpc, code.GRPC())
			require.Equal(t, want.http, code.HTTP())
			require.Equal(t, want.name, code.String())
		})
	}
}

func TestCode_UnknownCodeIsInternalOnTheWire(t *testing.T) {
	unknown := caerr.Code(99)
	require.Equal(t, codes.Internal, unknown.GRPC())
	require.Equal(t, http.StatusInternalServerError, unknown.HTTP())
	require.Equal(t, "code(99)", unknown.String())
}

func TestCodeOfAndReasonOf_SeeThroughWrapping(t *testing.T) {
	base := caerr.New(caerr.ResourceExhausted, "rate_limited", "slow down")
	tests := map[string]error{
		"direct":       base,
		"wrapped once": fmt.Errorf("sign: %w", base),
		"wrapped twice": fmt.Errorf("istio: %w",
			fmt.Errorf("sign: %w", base)),
		"joined": errors.Join(errors.New("other"), base),
	}
	for name, err := range tests {
		t.Run(name, func(t *testing.T) {
			require.Equal(t, caerr.ResourceExhausted, caerr.CodeOf(err))
			require.Equal(t, "rate_limited", caerr.ReasonOf(err))
		})
	}
}

func TestCodeOfAndReasonOf_OutermostCaerrWins(t *testing.T) {
	inner := caerr.New(caerr.NotFound, "no_record", "no such serial")
	outer := caerr.Wrap(fmt.Errorf("lookup: %w", inner), caerr.Unavailable, "store_unavailable", "read records")
	require.Equal(t, caerr.Unavailable, caerr.CodeOf(outer))
	require.Equal(t, "store_unavailable", caerr.ReasonOf(outer))
	require.Equal(t, caerr.NotFound, caerr.CodeOf(errors.Unwrap(outer)), "the wrapped error keeps its own code")
}

func TestCodeOfAndReasonOf_ForeignErrorsAreInternal(t *testing.T) {
	tests := map[string]error{
		"plain":   errors.New("boom"),
		"wrapped": fmt.Errorf("ctx: %w", errors.New("boom")),
		"nil":     nil,
		// %v flattens a caerr into text: its code is lost, as it must be
		// (no string matching).
		"formatted with %v": fmt.Errorf("no wrap: %v", caerr.New(caerr.NotFound, "x", "y")),
	}
	for name, err := range tests {
		t.Run(name, func(t *testing.T) {
			require.Equal(t, caerr.Internal, caerr.CodeOf(err))
			require.Equal(t, "internal", caerr.ReasonOf(err))
		})
	}
}

func TestReasonOf_EmptyReasonFallsBackToInternal(t *testing.T) {
	err := caerr.New(caerr.InvalidArgument, "", "bad csr")
	require.Equal(t, caerr.InvalidArgument, caerr.CodeOf(err), "the code still counts")
	require.Equal(t, "internal", caerr.ReasonOf(err))
}

func TestNew_FormatsMessageAndHasNoCause(t *testing.T) {
	err := caerr.New(caerr.InvalidArgument, "bad_ttl", "ttl %s exceeds %s", "48h", "24h")
	require.Equal(t, &caerr.Error{Code: caerr.InvalidArgument, Reason: "bad_ttl", Message: "ttl 48h exceeds 24h"}, err)
	require.Equal(t, "ttl 48h exceeds 24h", err.Error())
	require.NoError(t, err.Unwrap())
}

func TestWrap_ErrorTextAppendsTheCauseAndUnwrapsToIt(t *testing.T) {
	cause := errors.New("bolt: database not open")
	err := caerr.Wrap(cause, caerr.Unavailable, "store_unavailable", "record serial %d", 7)
	require.Equal(t, "record serial 7: bolt: database not open", err.Error())
	require.Same(t, cause, err.Unwrap())
	require.ErrorIs(t, err, cause)
	require.ErrorIs(t, fmt.Errorf("outer: %w", err), cause)
}

func TestError_LiteralWithoutErrIsJustTheMessage(t *testing.T) {
	err := &caerr.Error{Code: caerr.NotFound, Reason: "x", Message: "no such serial"}
	require.Equal(t, "no such serial", err.Error())
	err.Err = errors.New("cause")
	require.Equal(t, "no such serial: cause", err.Error())
}

func TestCodeOf_TypedNilIsInternalNotAPanic(t *testing.T) {
	var e *caerr.Error
	var err error = e
	require.Equal(t, caerr.Internal, caerr.CodeOf(err))
	require.Equal(t, "internal", caerr.ReasonOf(err))
}

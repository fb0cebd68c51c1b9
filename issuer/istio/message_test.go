package istio_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshca/meshca/ca/audit"
	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/caerr"
	"github.com/meshca/meshca/issuer/istio"
)

// signErr refuses every request with err.
type signErr struct{ err error }

func (s signErr) Sign(context.Context, authority.Request) (*authority.Result, error) {
	return nil, s.err
}

// A refusal for meshca's side tells the caller meshca's message, not its
// cause (a store's file path or database name); a refusal of the request
// keeps its cause, which tells the caller what to fix.
func TestCreateCertificate_ServerSideCauseStaysInTheLog(t *testing.T) {
	for name, tc := range map[string]struct {
		err  error
		code codes.Code
		msg  string
	}{
		"store down": {caerr.Wrap(errors.New("write /var/lib/meshca/meshca.db: file too large"), caerr.Unavailable, "store_unavailable", "record issuance"),
			codes.Unavailable, "record issuance"},
		"internal": {caerr.Wrap(errors.New("failed to connect to `user=meshca database=prod`"), caerr.Internal, "sign_failed", "sign"),
			codes.Internal, "sign"},
		"bad CSR": {caerr.Wrap(errors.New("asn1: structure error"), caerr.InvalidArgument, "csr_malformed", "parse CSR"),
			codes.InvalidArgument, "parse CSR: asn1: structure error"},
	} {
		t.Run(name, func(t *testing.T) {
			svc := istio.New(istio.Options{
				Signer: signErr{tc.err}, Authenticator: clusterEcho{}, Audit: audit.New(slog.New(slog.DiscardHandler)),
				Registerer: prometheus.NewRegistry(),
			})
			md := metadata.Pairs("authorization", "Bearer good")
			_, err := svc.CreateCertificate(metadata.NewIncomingContext(context.Background(), md), request(t, nil, 0, nil))
			require.Equal(t, tc.code, status.Code(err), err)
			require.Equal(t, tc.msg, status.Convert(err).Message())
		})
	}
}

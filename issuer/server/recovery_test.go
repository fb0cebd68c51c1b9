package server_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/meshca/meshca/ca/audit"
	"github.com/meshca/meshca/issuer/server"
	"github.com/meshca/meshca/test/logbuf"
)

// probe is a test service: methods that panic and one that reports the
// time left until the deadline its handler sees (-1ns without one).
const (
	probePanic       = "/meshca.test.Probe/Panic"
	probePanicStream = "/meshca.test.Probe/PanicStream"
	probeDeadline    = "/meshca.test.Probe/Deadline"
)

func registerProbe(s *grpc.Server) {
	unary := func(name string, h func(ctx context.Context) (any, error)) grpc.MethodDesc {
		return grpc.MethodDesc{MethodName: name, Handler: func(_ any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
			in := new(emptypb.Empty)
			if err := dec(in); err != nil {
				return nil, err
			}
			if ic == nil {
				return h(ctx)
			}
			return ic(ctx, in, &grpc.UnaryServerInfo{FullMethod: "/meshca.test.Probe/" + name}, func(ctx context.Context, _ any) (any, error) { return h(ctx) })
		}}
	}
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: "meshca.test.Probe",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{
			unary("Panic", func(context.Context) (any, error) { panic("boom in a unary handler") }),
			unary("Deadline", func(ctx context.Context) (any, error) {
				dl, ok := ctx.Deadline()
				if !ok {
					return durationpb.New(-1), nil // no deadline
				}
				return durationpb.New(time.Until(dl)), nil
			}),
		},
		Streams: []grpc.StreamDesc{{
			StreamName: "PanicStream", ServerStreams: true,
			Handler: func(any, grpc.ServerStream) error { panic("boom in a stream handler") },
		}},
	}, struct{}{})
}

type probeEnv struct {
	*running
	reg   *prometheus.Registry
	audit logbuf.Buffer
	log   logbuf.Buffer
}

func newProbe(t *testing.T, mutate func(*server.Options)) *probeEnv {
	t.Helper()
	p := &probeEnv{reg: prometheus.NewRegistry()}
	o := baseOptions()
	o.Registerer = p.reg
	o.Log = slog.New(slog.NewJSONHandler(&p.log, nil))
	o.Audit = audit.New(slog.New(slog.NewJSONHandler(&p.audit, nil)))
	if mutate != nil {
		mutate(&o)
	}
	srv, err := server.New(o)
	require.NoError(t, err)
	registerProbe(srv.GRPC)
	p.running = start(t, srv)
	return p
}

func (p *probeEnv) panics(t *testing.T, method string) float64 {
	t.Helper()
	mfs, err := p.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "meshca_grpc_panics_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == method {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func requireHealthy(t *testing.T, conn *grpc.ClientConn) {
	t.Helper()
	resp, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.GetStatus())
}

func TestRecovery_UnaryPanicIsInternalAuditedAndCounted(t *testing.T) {
	p := newProbe(t, nil)
	conn := dial(t, p.GRPCAddr().String())
	for i := 1; i <= 2; i++ {
		err := conn.Invoke(context.Background(), probePanic, &emptypb.Empty{}, &emptypb.Empty{})
		require.Equal(t, codes.Internal, status.Code(err), "%v", err)
		require.Equal(t, "internal error", status.Convert(err).Message(), "the panic value is not sent to the caller")
		require.Equal(t, float64(i), p.panics(t, probePanic))
	}
	require.Equal(t, 2, strings.Count(p.audit.String(), `"reason":"internal_panic"`))
	require.Contains(t, p.audit.String(), `"requester":"grpc /meshca.test.Probe/Panic"`)
	require.Contains(t, p.log.String(), "boom in a unary handler")
	requireHealthy(t, conn)
}

func TestRecovery_StreamPanicIsInternalAuditedAndCounted(t *testing.T) {
	p := newProbe(t, nil)
	conn := dial(t, p.GRPCAddr().String())
	st, err := conn.NewStream(context.Background(), &grpc.StreamDesc{ServerStreams: true}, probePanicStream)
	require.NoError(t, err)
	require.NoError(t, st.SendMsg(&emptypb.Empty{}))
	require.NoError(t, st.CloseSend())
	err = st.RecvMsg(&emptypb.Empty{})
	require.Equal(t, codes.Internal, status.Code(err), "%v", err)
	require.Equal(t, 1.0, p.panics(t, probePanicStream))
	require.Contains(t, p.audit.String(), `"reason":"internal_panic"`)
	requireHealthy(t, conn)
	require.Equal(t, 1, testutil.CollectAndCount(p.reg, "meshca_grpc_panics_total"))
}

// Paths the caller makes up never reach a handler or an interceptor, so
// they can never become a method label.
func TestRecovery_UnknownMethodsAreUnimplementedWithoutInterceptors(t *testing.T) {
	p := newProbe(t, nil)
	conn := dial(t, p.GRPCAddr().String())
	for _, m := range []string{"/meshca.test.Probe/Nope", "/no.Such.Service/Panic", "/meshca.test.Probe/Panic\xff"} {
		err := conn.Invoke(context.Background(), m, &emptypb.Empty{}, &emptypb.Empty{})
		require.Equal(t, codes.Unimplemented, status.Code(err), "%s: %v", m, err)
	}
	require.Zero(t, testutil.CollectAndCount(p.reg, "meshca_grpc_panics_total"))
	requireHealthy(t, conn)
}

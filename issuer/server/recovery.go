package server

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshca/meshca/ca/audit"
)

// methodUnknown labels a panic in a method the server did not register
// (which gRPC never routes to interceptors without an unknown-service
// handler, and meshca installs none).
const methodUnknown = "unknown"

// recovery turns a panic in a handler into an Internal error, an audit line,
// an error log with the stack and a count in meshca_grpc_panics_total, so
// that no request can end the process.
type recovery struct {
	log    *slog.Logger
	audit  *audit.Logger
	panics *prometheus.CounterVec
	// methods returns the registered full method names; only these become
	// label values, never a path the caller sent.
	methods func() map[string]bool
	once    sync.Once
	known   map[string]bool
}

func newRecovery(log *slog.Logger, a *audit.Logger, reg prometheus.Registerer, methods func() map[string]bool) *recovery {
	r := &recovery{
		log: log, audit: a, methods: methods,
		panics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshca_grpc_panics_total",
			Help: "Panics recovered in gRPC handlers, by registered method; each was answered with Internal.",
		}, []string{"method"}),
	}
	if reg != nil {
		reg.MustRegister(r.panics)
	}
	return r
}

func (r *recovery) recovered(ctx context.Context, method string, p any) error {
	// Services are registered before Serve, so the set is final by the
	// time a handler runs.
	r.once.Do(func() { r.known = r.methods() })
	if !r.known[method] {
		method = methodUnknown
	}
	r.panics.WithLabelValues(method).Inc()
	r.log.ErrorContext(ctx, "panic in gRPC handler", "method", method, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
	r.audit.Denied(ctx, audit.Decision{Requester: "grpc " + method, Reason: "internal_panic", Message: "the request caused an internal error"})
	return status.Error(codes.Internal, "internal error")
}

func (r *recovery) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if p := recover(); p != nil {
			resp, err = nil, r.recovered(ctx, info.FullMethod, p)
		}
	}()
	return handler(ctx, req)
}

func (r *recovery) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = r.recovered(ss.Context(), info.FullMethod, p)
		}
	}()
	return handler(srv, ss)
}

// registeredMethods lists the full method names of every service on g.
func registeredMethods(g *grpc.Server) map[string]bool {
	return methodsWhere(g, func(grpc.MethodInfo) bool { return true })
}

// streamingMethods is the full names of g's methods that stream.
func streamingMethods(g *grpc.Server) map[string]bool {
	return methodsWhere(g, func(m grpc.MethodInfo) bool { return m.IsClientStream || m.IsServerStream })
}

func methodsWhere(g *grpc.Server, keep func(grpc.MethodInfo) bool) map[string]bool {
	out := map[string]bool{}
	for svc, info := range g.GetServiceInfo() {
		for _, m := range info.Methods {
			if keep(m) {
				out["/"+svc+"/"+m.Name] = true
			}
		}
	}
	return out
}

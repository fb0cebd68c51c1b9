// Package server owns the lifecycle of meshca's network listeners: the gRPC
// listener that front doors register their services on, and the operations
// listener with /healthz, /readyz and /metrics. It starts them, reports
// readiness and shuts them down gracefully. Every gRPC server it makes
// recovers panics and enforces server.limits. It holds no CA logic.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"k8s.io/utils/clock"

	"github.com/meshca/meshca/ca/audit"
	"github.com/meshca/meshca/ca/config"
)

// ReadyFunc reports whether meshca can serve; a non-nil error explains why not.
type ReadyFunc func() error

// Options configure a Server.
type Options struct {
	GRPCListen string
	// GRPCListener is the gRPC listener, bound earlier by ListenGRPC (serve
	// binds it before it loads the CA, so that a port conflict fails before
	// anything is minted or recorded); New takes it over. Nil: New binds
	// GRPCListen.
	GRPCListener    net.Listener
	OpsListen       string
	ShutdownTimeout time.Duration
	Gatherer        prometheus.Gatherer
	// Registerer takes the server's own metrics (meshca_grpc_panics_total,
	// the gRPC connection metrics and, without Ops, meshca_ready).
	Registerer prometheus.Registerer
	Ready      ReadyFunc
	Log        *slog.Logger
	// Audit records recovered panics; nil means an audit logger on Log.
	Audit *audit.Logger
	// Limits bound the gRPC and operations listeners; zero fields take
	// their defaults.
	Limits config.LimitsConfig
	// Creds are the gRPC listener's transport credentials (TLS); nil
	// serves plaintext HTTP/2 (tests). Every connection is guarded against
	// resetting streams too often (server.limits.maxStreamResetsPerSecond)
	// below them.
	Creds credentials.TransportCredentials
	// Ops is an operations listener made earlier by NewOps, perhaps
	// already serving (a replica that loads its CA for a while answers
	// the kubelet's probes and Prometheus meanwhile); Run answers /readyz
	// with Ready from then on, and shuts it down. Nil: New makes one on
	// OpsListen, with Gatherer and Limits, served from Run.
	Ops *Ops
	// MoreOps are listeners beside Ops made by NewOps and started by the
	// caller (the CRL distribution point on crl.listen). Run shuts them
	// down with Ops once the gRPC port has drained, within
	// ShutdownTimeout: a request in a handler is answered, not cut.
	MoreOps []*Ops
}

// Server runs the gRPC and operations listeners.
type Server struct {
	opts   Options
	GRPC   *grpc.Server
	health *health.Server
	grpcLn net.Listener
	ops    *Ops
}

// ListenGRPC binds the gRPC listener (server.listen) for Options.GRPCListener.
func ListenGRPC(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("server.listen %s: %w", addr, err)
	}
	return ln, nil
}

// New binds both listeners (so that the addresses are known and port
// conflicts fail fast) and prepares the servers; with Options.Ops it binds
// only the gRPC listener, with Options.GRPCListener neither. If New fails
// it closes the gRPC listener, bound or given; otherwise Run serves it
// and closes it on shutdown. Register services on GRPC before calling Run.
func New(opts Options) (*Server, error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Audit == nil {
		opts.Audit = audit.New(opts.Log)
	}
	opts.Limits.Init()
	grpcLn := opts.GRPCListener
	var err error
	if grpcLn == nil {
		if grpcLn, err = ListenGRPC(opts.GRPCListen); err != nil {
			return nil, err
		}
	}
	ops := opts.Ops
	if ops == nil {
		if ops, err = NewOps(OpsOptions{Listen: opts.OpsListen, Gatherer: opts.Gatherer, Registerer: opts.Registerer, Ready: opts.Ready, Log: opts.Log, Limits: opts.Limits}); err != nil {
			grpcLn.Close()
			return nil, err
		}
	}
	l := opts.Limits
	if l.MaxConnectionsPerAddress >= l.MaxConnections {
		opts.Log.Warn("one source address can take every gRPC connection; set server.limits.maxConnectionsPerAddress below server.limits.maxConnections",
			"maxConnections", l.MaxConnections, "maxConnectionsPerAddress", l.MaxConnectionsPerAddress)
	}
	metrics := newGRPCConnMetrics(opts.Registerer)
	limited := newConnLimiter(grpcLn, "grpc", l.MaxConnections, l.MaxConnectionsPerAddress, metrics, opts.Log)
	limited.limitNewConnections(l.MaxNewConnectionsPerSecondPerAddress, l.MaxNewConnectionBurstPerAddress, clock.RealClock{})
	s := &Server{
		opts:   opts,
		grpcLn: limited,
		ops:    ops,
		health: health.NewServer(),
	}
	guard := newResetGuard(l.MaxStreamResetsPerSecond, l.MaxStreamResetBurst,
		metrics.closed.WithLabelValues(closedStreamResets).Inc, metrics.refused.WithLabelValues(closedStreamResets).Inc, opts.Log)
	var creds []grpc.ServerOption
	if opts.Creds != nil {
		creds = append(creds, grpc.Creds(guardedCreds{TransportCredentials: opts.Creds, g: guard}))
	}
	s.grpcLn = guardedListener{Listener: s.grpcLn, g: guard, wrapConns: opts.Creds == nil}
	rec := newRecovery(opts.Log, opts.Audit, opts.Registerer, func() map[string]bool { return registeredMethods(s.GRPC) })
	// Taps run only once Serve runs, when every service is registered.
	streaming := sync.OnceValue(func() map[string]bool { return streamingMethods(s.GRPC) })
	gopts := append(limitOptions(opts.Limits),
		grpc.InTapHandle(requestDeadline(opts.Limits.MaxRequestTimeout.Duration, func(m string) bool { return streaming()[m] })),
		// Recovery is outermost, so that it also catches a panic in the
		// interceptors after it.
		grpc.ChainUnaryInterceptor(rec.unary),
		grpc.ChainStreamInterceptor(rec.stream),
	)
	s.GRPC = grpc.NewServer(append(gopts, creds...)...)
	healthpb.RegisterHealthServer(s.GRPC, s.health)
	return s, nil
}

// HandleOps mounts h on the operations listener (Ops.Handle).
func (s *Server) HandleOps(pattern string, h http.Handler) { s.ops.Handle(pattern, h) }

// GRPCAddr is the bound gRPC address.
func (s *Server) GRPCAddr() net.Addr { return s.grpcLn.Addr() }

// OpsAddr is the bound operations address.
func (s *Server) OpsAddr() net.Addr { return s.ops.Addr() }

// errShuttingDown answers /readyz from the start of Run's shutdown.
func errShuttingDown() error { return errors.New("shutting down") }

// Run serves until ctx is cancelled, then drains in-flight requests within
// the shutdown timeout and returns. From its start /readyz answers with
// Options.Ready.
func (s *Server) Run(ctx context.Context) error {
	errc := make(chan error, 2)
	go func() { errc <- s.GRPC.Serve(s.grpcLn) }()
	s.ops.SetReady(s.opts.Ready)
	go func() { errc <- s.ops.serve() }()
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.opts.Log.Info("serving", "grpc", s.GRPCAddr().String(), "ops", s.OpsAddr().String())

	var runErr error
	pending := 2 // Serve goroutines still running
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		pending--
	}
	s.opts.Log.Info("shutting down", "timeout", s.opts.ShutdownTimeout)
	// Out of the Service while in-flight requests drain: the gRPC
	// listener takes no new connection.
	s.ops.SetReady(errShuttingDown)
	s.health.Shutdown()
	sctx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
	defer cancel()
	done := make(chan struct{})
	go func() { s.GRPC.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-sctx.Done():
		s.GRPC.Stop()
	}
	if err := shutdownOps(sctx, append([]*Ops{s.ops}, s.opts.MoreOps...)); err != nil && runErr == nil {
		runErr = err
	}
	// A Serve that starts after the stop closes its listener only as it
	// returns: wait for both, so the ports are free when Run returns.
	for ; pending > 0; pending-- {
		<-errc
	}
	return runErr
}

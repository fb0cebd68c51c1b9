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
	"runtime/debug"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/meshca/meshca/ca/audit"
	"github.com/meshca/meshca/ca/config"
)

// ReadyFunc reports whether meshca can serve; a non-nil error explains why not.
type ReadyFunc func() error

// Options configure a Server.
type Options struct {
	GRPCListen      string
	OpsListen       string
	ShutdownTimeout time.Duration
	Gatherer        prometheus.Gatherer
	// Registerer takes the server's own metrics (meshca_grpc_panics_total).
	Registerer prometheus.Registerer
	Ready      ReadyFunc
	Log        *slog.Logger
	// Audit records recovered panics; nil means an audit logger on Log.
	Audit *audit.Logger
	// Limits bound the gRPC and operations listeners; zero fields take
	// their defaults.
	Limits config.LimitsConfig
	// GRPCOptions are added to the server's own (limits, recovery,
	// deadline cap), e.g. the TLS credentials.
	GRPCOptions []grpc.ServerOption
}

// Server runs the gRPC and operations listeners.
type Server struct {
	opts   Options
	GRPC   *grpc.Server
	health *health.Server
	grpcLn net.Listener
	opsLn  net.Listener
	ops    *http.Server
	opsMux *http.ServeMux

	// notReady is the last reason /readyz gave, logged when it changes.
	mu       sync.Mutex
	notReady string
}

// New binds both listeners (so that the addresses are known and port
// conflicts fail fast) and prepares the servers. Register services on GRPC
// before calling Run.
func New(opts Options) (*Server, error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Audit == nil {
		opts.Audit = audit.New(opts.Log)
	}
	opts.Limits.Init()
	grpcLn, err := net.Listen("tcp", opts.GRPCListen)
	if err != nil {
		return nil, fmt.Errorf("server.listen %s: %w", opts.GRPCListen, err)
	}
	opsLn, err := net.Listen("tcp", opts.OpsListen)
	if err != nil {
		grpcLn.Close()
		return nil, fmt.Errorf("server.opsListen %s: %w", opts.OpsListen, err)
	}
	l := opts.Limits
	if l.MaxConnectionsPerAddress >= l.MaxConnections {
		opts.Log.Warn("one source address can take every gRPC connection; set server.limits.maxConnectionsPerAddress below server.limits.maxConnections",
			"maxConnections", l.MaxConnections, "maxConnectionsPerAddress", l.MaxConnectionsPerAddress)
	}
	s := &Server{
		opts:   opts,
		grpcLn: newConnLimiter(grpcLn, "grpc", l.MaxConnections, l.MaxConnectionsPerAddress, newGRPCConnMetrics(opts.Registerer), opts.Log),
		// The operations port serves the kubelet's probes, Prometheus and
		// CRLs to any relying party: one source address holds at most a
		// share of it, so that CRL fetchers cannot take the probes' slots.
		opsLn:  newConnLimiter(opsLn, "ops", l.OpsMaxConnections, OpsMaxConnectionsPerAddress(l.OpsMaxConnections), connMetrics{}, opts.Log),
		health: health.NewServer(),
	}
	rec := newRecovery(opts.Log, opts.Audit, opts.Registerer, func() map[string]bool { return registeredMethods(s.GRPC) })
	gopts := append(limitOptions(opts.Limits),
		// Recovery is outermost, so that it also catches a panic in the
		// interceptors after it.
		grpc.ChainUnaryInterceptor(rec.unary, deadlineCap(opts.Limits.MaxRequestTimeout.Duration)),
		grpc.ChainStreamInterceptor(rec.stream),
	)
	s.GRPC = grpc.NewServer(append(gopts, opts.GRPCOptions...)...)
	healthpb.RegisterHealthServer(s.GRPC, s.health)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", s.readyz)
	if opts.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{}))
	}
	s.opsMux = mux
	s.ops = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: l.OpsReadTimeout.Duration,
		ReadTimeout:       l.OpsReadTimeout.Duration,
		WriteTimeout:      l.OpsWriteTimeout.Duration,
		IdleTimeout:       l.OpsIdleTimeout.Duration,
		MaxHeaderBytes:    opsMaxHeaderBytes,
	}
	return s, nil
}

// HandleOps mounts h on the operations listener at pattern (a
// http.ServeMux pattern such as "GET /crl/"), next to /healthz, /readyz
// and /metrics, under the listener's limits (connections, timeouts, header
// size). A panic in h answers 500 and is logged with its stack. Call it
// before Run; h must not read request bodies.
func (s *Server) HandleOps(pattern string, h http.Handler) {
	s.opsMux.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.opts.Log.Error("panic in an operations handler", "pattern", pattern, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				http.Error(w, "internal error", http.StatusInternalServerError)
			}
		}()
		h.ServeHTTP(&sizedDeadlineWriter{ResponseWriter: w, rc: http.NewResponseController(w),
			start: time.Now(), base: s.opts.Limits.OpsWriteTimeout.Duration}, r)
	}))
}

// OpsMaxConnectionsPerAddress is the share of the operations listener's
// total connections that one source address may hold: a quarter (16 of
// the default 64), at least min(total, 4). The kubelet probes from the
// node's address, and each probe holds one connection at a time.
func OpsMaxConnectionsPerAddress(total int) int {
	return max(total/4, min(total, 4))
}

// GRPCAddr is the bound gRPC address.
func (s *Server) GRPCAddr() net.Addr { return s.grpcLn.Addr() }

// OpsAddr is the bound operations address.
func (s *Server) OpsAddr() net.Addr { return s.opsLn.Addr() }

// opsMaxHeaderBytes bounds the request headers on the operations port; its
// clients send short requests.
const opsMaxHeaderBytes = 16 << 10

// readyz answers a fixed body: the reason may hold file paths or I/O errors,
// which are for the operator's log, not for any caller of the port.
func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	var reason string
	if s.opts.Ready != nil {
		if err := s.opts.Ready(); err != nil {
			reason = err.Error()
		}
	}
	s.mu.Lock()
	changed := reason != s.notReady
	s.notReady = reason
	s.mu.Unlock()
	if changed {
		if reason != "" {
			s.opts.Log.Warn("not ready", "reason", reason)
		} else {
			s.opts.Log.Info("ready again")
		}
	}
	if reason != "" {
		http.Error(w, "not ready", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

// Run serves until ctx is cancelled, then drains in-flight requests within
// the shutdown timeout and returns.
func (s *Server) Run(ctx context.Context) error {
	errc := make(chan error, 2)
	go func() { errc <- s.GRPC.Serve(s.grpcLn) }()
	go func() {
		if err := s.ops.Serve(s.opsLn); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
			return
		}
		errc <- nil
	}()
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
	if err := s.ops.Shutdown(sctx); err != nil && runErr == nil {
		runErr = err
	}
	// A Serve that starts after the stop closes its listener only as it
	// returns: wait for both, so the ports are free when Run returns.
	for ; pending > 0; pending-- {
		<-errc
	}
	return runErr
}

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
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/meshca/meshca/ca/config"
)

// OpsOptions configure an operations listener (NewOps).
type OpsOptions struct {
	Listen   string
	Gatherer prometheus.Gatherer
	// Ready answers /readyz until a Server's Run replaces it with its own;
	// nil means ready.
	Ready ReadyFunc
	Log   *slog.Logger
	// Registerer, when set, takes meshca_ready.
	Registerer prometheus.Registerer
	// Limits bound the listener (server.limits.ops*); zero fields take
	// their defaults.
	Limits config.LimitsConfig
	// Name names the listener in logs ("ops" when empty), and Key the
	// setting of Listen in errors ("server.opsListen" when empty).
	Name, Key string
	// RoutesOnly serves only what Handle mounts, without /healthz,
	// /readyz and /metrics: a listener for relying parties, such as the
	// CRL distribution point on crl.listen.
	RoutesOnly bool
}

// Ops is the operations listener: /healthz, /readyz, /metrics and what
// Handle mounts. It can serve before the gRPC listener does (Start), so
// that the kubelet's probes and Prometheus reach a replica while it opens
// its CA, which may take long: a Vault login, minting the first
// intermediate, or a replica that does not hold the Lease waiting for the
// holder's first one. Meanwhile /healthz answers 200 (the process is alive
// and restarting it would not help) and /readyz 503, so the replica stays
// out of the Service until it signs.
type Ops struct {
	log   *slog.Logger
	name  string
	ln    net.Listener
	srv   *http.Server
	mux   *http.ServeMux
	ready atomic.Pointer[ReadyFunc]

	once    sync.Once
	stopped chan struct{} // closed when Serve has returned
	err     error         // Serve's error, once stopped

	// notReady is the last reason /readyz gave, logged when it changes.
	mu       sync.Mutex
	notReady string
}

// NewOps binds the operations listener (so that a port conflict fails
// fast) and prepares its server; it serves from Start or from the Run of
// the Server it is given to.
func NewOps(o OpsOptions) (*Ops, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	o.Limits.Init()
	if o.Key == "" {
		o.Key = "server.opsListen"
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", o.Key, o.Listen, err)
	}
	l := o.Limits
	if o.Name == "" {
		o.Name = "ops"
	}
	ops := &Ops{
		log:  o.Log,
		name: o.Name,
		// The operations port serves the kubelet's probes, Prometheus and,
		// without crl.listen, CRLs to any relying party: one source
		// address holds at most a share of it. A few addresses can still
		// hold every slot, so relying parties in the mesh belong on a
		// listener of their own (crl.listen).
		ln:      newConnLimiter(ln, o.Name, l.OpsMaxConnections, OpsMaxConnectionsPerAddress(l.OpsMaxConnections), connMetrics{}, o.Log),
		mux:     http.NewServeMux(),
		stopped: make(chan struct{}),
	}
	ops.SetReady(o.Ready)
	if o.Registerer != nil {
		if err := o.Registerer.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "meshca_ready",
			Help: "1 while this replica's /readyz answers 200 (it signs), else 0: starting (opening the CA, or waiting for the lease holder's first intermediate), shutting down, or failing (the store, an expired intermediate).",
		}, func() float64 {
			if (*ops.ready.Load())() != nil {
				return 0
			}
			return 1
		})); err != nil {
			ln.Close()
			return nil, err
		}
	}
	if !o.RoutesOnly {
		ops.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
		ops.mux.HandleFunc("GET /readyz", ops.readyz)
		if o.Gatherer != nil {
			ops.mux.Handle("GET /metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{}))
		}
	}
	ops.srv = &http.Server{
		Handler:           ops.mux,
		ReadHeaderTimeout: l.OpsReadTimeout.Duration,
		ReadTimeout:       l.OpsReadTimeout.Duration,
		WriteTimeout:      l.OpsWriteTimeout.Duration,
		IdleTimeout:       l.OpsIdleTimeout.Duration,
		MaxHeaderBytes:    opsMaxHeaderBytes,
		ErrorLog:          HTTPErrorLog(o.Log, o.Name, slog.LevelWarn, nil),
	}
	return ops, nil
}

// Start serves the listener now, in the background; a second call does
// nothing. The Run of the Server it is given to shuts it down; before
// that, Close does.
func (o *Ops) Start() {
	o.once.Do(func() {
		o.log.Info("serving operations", o.name, o.Addr().String())
		go func() {
			if err := o.srv.Serve(o.ln); !errors.Is(err, http.ErrServerClosed) {
				o.log.Error("the operations listener stopped", "listener", o.name, "error", err)
				o.err = err
			}
			close(o.stopped)
		}()
	})
}

// serve starts the listener unless it serves already, and returns when it
// stops (at once for one already stopped).
func (o *Ops) serve() error {
	o.Start()
	<-o.stopped
	return o.err
}

// shutdownOps shuts the listeners down at once, each waiting for its
// requests in handlers until ctx ends (http.Server.Shutdown; a request
// whose headers arrive after that is not served), and returns their
// errors joined.
func shutdownOps(ctx context.Context, all []*Ops) error {
	errs := make([]error, len(all))
	var wg sync.WaitGroup
	for i, o := range all {
		wg.Go(func() { errs[i] = o.srv.Shutdown(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Close stops the listener at once (for a serve that fails before Run).
func (o *Ops) Close() error {
	err := o.srv.Close()
	o.ln.Close() // never served: Close did not close it
	return err
}

// SetReady makes f answer /readyz (nil: ready).
func (o *Ops) SetReady(f ReadyFunc) {
	if f == nil {
		f = func() error { return nil }
	}
	o.ready.Store(&f)
}

// Addr is the bound operations address.
func (o *Ops) Addr() net.Addr { return o.ln.Addr() }

// Handle mounts h on the operations listener at pattern (a
// http.ServeMux pattern such as "GET /crl/"), next to /healthz, /readyz
// and /metrics, under the listener's limits (connections, timeouts, header
// size). A panic in h answers 500 and is logged with its stack. It may be
// called while the listener serves; h must not read request bodies.
func (o *Ops) Handle(pattern string, h http.Handler) {
	o.mux.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				o.log.Error("panic in an operations handler", "pattern", pattern, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				http.Error(w, "internal error", http.StatusInternalServerError)
			}
		}()
		h.ServeHTTP(&sizedDeadlineWriter{ResponseWriter: w, rc: http.NewResponseController(w),
			start: time.Now(), base: o.srv.WriteTimeout}, r)
	}))
}

// startingRetryAfter is the Retry-After (seconds) of a route mounted with
// HandleLater while its handler is not set yet.
const startingRetryAfter = "5"

// HandleLater mounts pattern now, for a handler that exists only once the
// CA is open (the CRLs): until set is called, the route answers 503
// Service Unavailable with Retry-After (RFC 9110 sections 15.6.4 and
// 10.2.3) and no-store, so that a relying party that reaches a starting
// replica retries instead of taking a 404 for "no such CRL"; from set on,
// h answers, as with Handle. set may be called once.
func (o *Ops) HandleLater(pattern string) (set func(h http.Handler)) {
	var later atomic.Pointer[http.Handler]
	o.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h := later.Load(); h != nil {
			(*h).ServeHTTP(w, r)
			return
		}
		w.Header().Set("Retry-After", startingRetryAfter)
		w.Header().Set("Cache-Control", "no-store")
		http.Error(w, "starting", http.StatusServiceUnavailable)
	}))
	return func(h http.Handler) {
		if !later.CompareAndSwap(nil, &h) {
			panic("server: HandleLater's handler set twice for " + pattern)
		}
	}
}

// OpsMaxConnectionsPerAddress is the share of the operations listener's
// total connections that one source address may hold: a quarter (16 of
// the default 64), at least min(total, 4). The kubelet probes from the
// node's address, and each probe holds one connection at a time.
func OpsMaxConnectionsPerAddress(total int) int {
	return max(total/4, min(total, 4))
}

// opsMaxHeaderBytes bounds the request headers on the operations port; its
// clients send short requests.
const opsMaxHeaderBytes = 16 << 10

// readyz answers a fixed body: the reason may hold file paths or I/O errors,
// which are for the operator's log, not for any caller of the port.
func (o *Ops) readyz(w http.ResponseWriter, _ *http.Request) {
	var reason string
	if err := (*o.ready.Load())(); err != nil {
		reason = err.Error()
	}
	o.mu.Lock()
	changed := reason != o.notReady
	o.notReady = reason
	o.mu.Unlock()
	if changed {
		if reason != "" {
			o.log.Warn("not ready", "reason", reason)
		} else {
			o.log.Info("ready again")
		}
	}
	if reason != "" {
		http.Error(w, "not ready", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

package server_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/meshca/meshca/issuer/server"
	"github.com/meshca/meshca/test/logbuf"
)

func baseOptions() server.Options {
	return server.Options{
		GRPCListen:      "127.0.0.1:0",
		OpsListen:       "127.0.0.1:0",
		ShutdownTimeout: 30 * time.Second,
		Log:             slog.New(slog.DiscardHandler),
	}
}

// running is a Server whose Run is in progress.
type running struct {
	*server.Server
	cancel context.CancelFunc
	done   chan struct{} // closed when Run has returned
	err    error         // Run's result, valid after done
}

// prepare wraps srv; its done channel exists before Run starts.
func prepare(srv *server.Server) *running {
	return &running{Server: srv, done: make(chan struct{})}
}

// run starts Run until the test ends (or stop is called).
func (r *running) run(t *testing.T) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() {
		r.err = r.Server.Run(ctx)
		close(r.done)
	}()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func start(t *testing.T, srv *server.Server) *running { return prepare(srv).run(t) }

// stop cancels Run and waits for it to return.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		return r.err
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
		return nil
	}
}

func newRunning(t *testing.T, mutate func(*server.Options)) *running {
	t.Helper()
	o := baseOptions()
	if mutate != nil {
		mutate(&o)
	}
	srv, err := server.New(o)
	require.NoError(t, err)
	return start(t, srv)
}

func get(t *testing.T, r *running, path string) (int, string) {
	t.Helper()
	return httpGet(t, "http://"+r.OpsAddr().String()+path)
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestNew_BindsLoopbackPortsBeforeRun(t *testing.T) {
	srv, err := server.New(baseOptions())
	require.NoError(t, err)
	for _, a := range []net.Addr{srv.GRPCAddr(), srv.OpsAddr()} {
		tcp, ok := a.(*net.TCPAddr)
		require.True(t, ok)
		require.True(t, tcp.IP.IsLoopback())
		require.NotZero(t, tcp.Port, "the port is known as soon as New returns")
	}
	require.NotEqual(t, srv.GRPCAddr().String(), srv.OpsAddr().String())
	r := start(t, srv)
	require.NoError(t, r.stop(t))
}

func TestHealthz_AlwaysOK(t *testing.T) {
	r := newRunning(t, func(o *server.Options) { o.Ready = func() error { return errors.New("not yet") } })
	code, body := get(t, r, "/healthz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ok\n", body, "liveness does not depend on readiness")
}

func TestHealthz_OnlyAnswersGET(t *testing.T) {
	r := newRunning(t, nil)
	resp, err := http.Post("http://"+r.OpsAddr().String()+"/healthz", "text/plain", nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
}

func TestReadyz_FollowsTheReadyFunc(t *testing.T) {
	var reason atomic.Pointer[error]
	var logs logbuf.Buffer
	r := newRunning(t, func(o *server.Options) {
		o.Log = slog.New(slog.NewJSONHandler(&logs, nil))
		o.Ready = func() error {
			if p := reason.Load(); p != nil {
				return *p
			}
			return nil
		}
	})
	code, body := get(t, r, "/readyz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ok\n", body)

	notReady := errors.New("store /var/lib/meshca/s.db: read: input/output error")
	reason.Store(&notReady)
	for range 3 {
		code, body = get(t, r, "/readyz")
		require.Equal(t, http.StatusServiceUnavailable, code)
		require.Equal(t, "not ready\n", body, "the reason is not shown to unauthenticated callers")
	}
	require.Equal(t, 1, strings.Count(logs.String(), `"reason":"store /var/lib/meshca/s.db: read: input/output error"`),
		"the reason is logged once, when it changes: %s", logs.String())

	reason.Store(nil)
	code, _ = get(t, r, "/readyz")
	require.Equal(t, http.StatusOK, code, "readiness recovers with the Ready func")
}

func TestReadyz_WithoutReadyFuncIsReady(t *testing.T) {
	r := newRunning(t, nil)
	code, body := get(t, r, "/readyz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ok\n", body)
}

func TestMetrics_ServedFromTheGatherer(t *testing.T) {
	reg := prometheus.NewRegistry()
	issued := prometheus.NewCounter(prometheus.CounterOpts{Name: "meshca_test_issued_total", Help: "test counter"})
	reg.MustRegister(issued)
	issued.Add(3)
	r := newRunning(t, func(o *server.Options) { o.Gatherer = reg })

	code, body := get(t, r, "/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "# HELP meshca_test_issued_total test counter\n")
	require.Contains(t, body, "\nmeshca_test_issued_total 3\n")
	require.NotContains(t, body, "go_goroutines", "only the given Gatherer is exposed, not the default registry")

	issued.Inc()
	_, body = get(t, r, "/metrics")
	require.Contains(t, body, "\nmeshca_test_issued_total 4\n", "metrics are gathered at scrape time")
}

func TestMetrics_AbsentWithoutGatherer(t *testing.T) {
	r := newRunning(t, nil)
	code, _ := get(t, r, "/metrics")
	require.Equal(t, http.StatusNotFound, code)
}

func TestGRPC_HealthServiceReportsServing(t *testing.T) {
	r := newRunning(t, nil)
	resp, err := healthpb.NewHealthClient(dial(t, r.GRPCAddr().String())).Check(context.Background(), &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.GetStatus())
}

// blocker is a one-method gRPC service whose calls wait for the test.
type blocker struct {
	entered chan struct{}
	release chan struct{}
	// onFinish runs as the handler returns.
	onFinish func()
}

const blockMethod = "/meshca.test.Blocker/Block"

func (b *blocker) register(s *grpc.Server) {
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: "meshca.test.Blocker",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Block",
			Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				if err := dec(new(emptypb.Empty)); err != nil {
					return nil, err
				}
				close(b.entered)
				defer b.onFinish()
				select {
				case <-b.release:
					return &emptypb.Empty{}, nil
				case <-ctx.Done():
					return nil, status.FromContextError(ctx.Err()).Err()
				}
			},
		}},
	}, b)
}

// callInBackground starts one Block call and returns its result channel.
func callInBackground(conn *grpc.ClientConn) <-chan error {
	errc := make(chan error, 1)
	go func() { errc <- conn.Invoke(context.Background(), blockMethod, &emptypb.Empty{}, &emptypb.Empty{}) }()
	return errc
}

// waitUntilListenerClosed polls fresh TCP connections until the gRPC
// listener is closed (the connection is refused by the kernel), which shows
// that shutdown is under way. A connection the listener accepts and closes
// at once (server.limits.maxNewConnectionsPerSecondPerAddress) is not that.
func waitUntilListenerClosed(t *testing.T, addr string) {
	t.Helper()
	require.Eventually(t, func() bool {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err == nil {
			c.Close()
			return false
		}
		return errors.Is(err, syscall.ECONNREFUSED)
	}, 10*time.Second, 5*time.Millisecond)
}

func TestRun_DrainsAnInFlightCallBeforeReturning(t *testing.T) {
	srv, err := server.New(baseOptions())
	require.NoError(t, err)
	b := &blocker{entered: make(chan struct{}), release: make(chan struct{})}
	var runReturnedFirst atomic.Bool
	r := prepare(srv)
	b.onFinish = func() {
		select {
		case <-r.done:
			runReturnedFirst.Store(true)
		default:
		}
	}
	b.register(srv.GRPC)
	r.run(t)

	callErr := callInBackground(dial(t, srv.GRPCAddr().String()))
	<-b.entered
	r.cancel()
	waitUntilListenerClosed(t, srv.GRPCAddr().String())

	select {
	case <-r.done:
		t.Fatal("Run returned while a call was still in flight")
	default:
	}
	close(b.release)
	require.NoError(t, <-callErr, "the in-flight call completes normally")
	require.NoError(t, r.stop(t))
	require.False(t, runReturnedFirst.Load(), "Run returned before the handler finished")
}

func TestRun_CutsOffCallsThatOutliveTheShutdownTimeout(t *testing.T) {
	o := baseOptions()
	o.ShutdownTimeout = 50 * time.Millisecond
	srv, err := server.New(o)
	require.NoError(t, err)
	b := &blocker{entered: make(chan struct{}), release: make(chan struct{}), onFinish: func() {}}
	b.register(srv.GRPC)
	r := start(t, srv)

	callErr := callInBackground(dial(t, srv.GRPCAddr().String()))
	<-b.entered
	require.NoError(t, r.stop(t), "a forced stop after the timeout is not a Run error")
	require.Equal(t, codes.Unavailable, status.Code(<-callErr), "the stuck call is cut off")
}

// A listener beside the ops port (the CRL distribution point on
// crl.listen) drains with it: a request in its handler when Run is told to
// stop is answered before Run returns, not cut by the caller's Close.
func TestRun_DrainsTheListenersBesideOps(t *testing.T) {
	crl, err := server.NewOps(server.OpsOptions{Listen: "127.0.0.1:0", Name: "crl", Key: "crl.listen", RoutesOnly: true, Log: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	entered, release := make(chan struct{}), make(chan struct{})
	crl.Handle("GET /crl/", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		close(entered)
		<-release
		_, _ = io.WriteString(w, "the CRL")
	}))
	crl.Start()
	o := baseOptions()
	o.MoreOps = []*server.Ops{crl}
	srv, err := server.New(o)
	require.NoError(t, err)
	r := start(t, srv)
	crlAddr := crl.Addr().String()
	type answer struct {
		code int
		body string
		err  error
	}
	answered := make(chan answer, 1)
	go func() {
		resp, err := http.Get("http://" + crlAddr + "/crl/ca-crl.pem")
		if err != nil {
			answered <- answer{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		answered <- answer{resp.StatusCode, string(b), err}
	}()
	<-entered
	r.cancel()
	waitUntilListenerClosed(t, srv.GRPCAddr().String())
	select {
	case <-r.done:
		t.Fatal("Run returned while a CRL request was in its handler")
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	a := <-answered
	require.NoError(t, a.err)
	require.Equal(t, http.StatusOK, a.code)
	require.Equal(t, "the CRL", a.body)
	require.NoError(t, r.stop(t))
	require.NoError(t, crl.Close(), "serve's deferred Close after Run")
	ln, err := net.Listen("tcp", crlAddr)
	require.NoError(t, err, "%s is free again", crlAddr)
	ln.Close()
}

func TestRun_ClosesBothListeners(t *testing.T) {
	r := newRunning(t, nil)
	grpcAddr, opsAddr := r.GRPCAddr().String(), r.OpsAddr().String()
	require.NoError(t, r.stop(t))
	for _, addr := range []string{grpcAddr, opsAddr} {
		ln, err := net.Listen("tcp", addr)
		require.NoError(t, err, "%s is free again after Run returns", addr)
		ln.Close()
	}
}

// Cancelled before its Serve goroutines start, Run must still not return
// until both listeners are closed (each round hit the race about one time
// in three before Run waited for them).
func TestRun_CancelledBeforeServingStillFreesBothPortsBeforeReturning(t *testing.T) {
	for round := range 50 {
		srv, err := server.New(baseOptions())
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		require.NoError(t, srv.Run(ctx))
		for _, a := range []net.Addr{srv.GRPCAddr(), srv.OpsAddr()} {
			ln, err := net.Listen("tcp", a.String())
			require.NoError(t, err, "round %d: %s still bound after Run returned", round, a)
			ln.Close()
		}
	}
}

func TestNew_GRPCAddressInUseFailsNamingServerListen(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()
	o := baseOptions()
	o.GRPCListen = taken.Addr().String()

	srv, err := server.New(o)
	require.Nil(t, srv)
	require.ErrorContains(t, err, "server.listen "+taken.Addr().String()+": ")
	require.ErrorContains(t, err, "address already in use")
}

func TestNew_OpsAddressInUseFailsAndReleasesTheGRPCPort(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	grpcAddr := free.Addr().String()
	require.NoError(t, free.Close())

	o := baseOptions()
	o.GRPCListen, o.OpsListen = grpcAddr, taken.Addr().String()
	srv, err := server.New(o)
	require.Nil(t, srv)
	require.ErrorContains(t, err, "server.opsListen "+taken.Addr().String()+": ")
	require.ErrorContains(t, err, "address already in use")

	ln, err := net.Listen("tcp", grpcAddr)
	require.NoError(t, err, "New closed the gRPC listener it had bound")
	ln.Close()
}

// From the start of the shutdown, while in-flight calls drain, /readyz
// answers 503 and meshca_ready is 0: the replica leaves the Service
// before its listeners close.
func TestRun_NotReadyWhileDraining(t *testing.T) {
	o := baseOptions()
	reg := prometheus.NewRegistry()
	o.Registerer, o.Gatherer = reg, reg
	srv, err := server.New(o)
	require.NoError(t, err)
	b := &blocker{entered: make(chan struct{}), release: make(chan struct{}), onFinish: func() {}}
	b.register(srv.GRPC)
	r := start(t, srv)
	code, _ := get(t, r, "/readyz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, 1.0, gaugeValue(t, reg, "meshca_ready"))

	callErr := callInBackground(dial(t, srv.GRPCAddr().String()))
	<-b.entered
	r.cancel()
	waitUntilListenerClosed(t, srv.GRPCAddr().String())
	code, body := get(t, r, "/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "not ready\n", body)
	require.Equal(t, 0.0, gaugeValue(t, reg, "meshca_ready"))
	close(b.release)
	require.NoError(t, <-callErr)
	require.NoError(t, r.stop(t))
}

// gaugeValue is the value of the unlabelled gauge name in reg.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			require.Len(t, mf.GetMetric(), 1)
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("%s is not registered", name)
	return 0
}

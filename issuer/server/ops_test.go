package server_test

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/meshca/meshca/issuer/server"
	"github.com/meshca/meshca/test/httpget"
	"github.com/meshca/meshca/test/logbuf"
)

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	return httpget.Get(t, url)
}

// An operations listener started before the Server answers the probes and
// Prometheus while the CA is still being opened: /healthz 200, /readyz 503
// (its reason logged, not answered); the Server it is given to keeps it
// (same address, same mounts) and answers /readyz with its own Ready from
// Run on.
func TestOps_ServesBeforeTheServer(t *testing.T) {
	var logs logbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "meshca_test_early_total", Help: "A metric."}))
	ops, err := server.NewOps(server.OpsOptions{
		Listen: "127.0.0.1:0", Gatherer: reg, Registerer: reg, Log: log,
		Ready: func() error { return errors.New("starting: waiting for the lease holder's first intermediate") },
	})
	require.NoError(t, err)
	ops.Start()
	ops.Start() // a second Start does nothing
	base := "http://" + ops.Addr().String()

	code, body := httpGet(t, base+"/healthz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ok\n", body)
	code, body = httpGet(t, base+"/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "not ready\n", body)
	require.Contains(t, logs.String(), "waiting for the lease holder's first intermediate")
	code, body = httpGet(t, base+"/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "meshca_test_early_total 0\n")
	require.Contains(t, body, "\nmeshca_ready 0\n")

	// Mounted while serving.
	ops.Handle("GET /crl/", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("crl")) }))
	code, body = httpGet(t, base+"/crl/x.crl")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "crl", body)

	o := baseOptions()
	o.Log = log
	o.OpsListen = "127.0.0.1:1" // unused: Ops is given
	o.Ops = ops
	o.Ready = func() error { return nil }
	srv, err := server.New(o)
	require.NoError(t, err)
	require.Equal(t, ops.Addr().String(), srv.OpsAddr().String())
	// New alone does not make the replica ready: the gRPC port is not served yet.
	code, _ = httpGet(t, base+"/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)

	r := start(t, srv)
	require.Eventually(t, func() bool {
		resp, err := healthpb.NewHealthClient(dial(t, srv.GRPCAddr().String())).Check(t.Context(), &healthpb.HealthCheckRequest{})
		return err == nil && resp.Status == healthpb.HealthCheckResponse_SERVING
	}, 5*time.Second, 10*time.Millisecond)
	code, body = httpGet(t, base+"/readyz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ok\n", body)
	require.Contains(t, logs.String(), "ready again")
	require.Equal(t, 1.0, gaugeValue(t, reg, "meshca_ready"))
	code, _ = httpGet(t, base+"/crl/x.crl")
	require.Equal(t, http.StatusOK, code)

	require.NoError(t, r.stop(t))
	// A second Run returns at once (both servers are stopped), whatever
	// it reports: it does not wait for an operations listener that
	// stopped already.
	again := make(chan struct{})
	go func() { _ = r.Server.Run(t.Context()); close(again) }()
	select {
	case <-again:
	case <-time.After(10 * time.Second):
		t.Fatal("a second Run hangs")
	}
	_, err = http.Get(base + "/healthz")
	require.Error(t, err, "Run shut the early listener down")
}

// Close stops an operations listener that no Server ran (a serve that
// failed while opening its CA), started or not, and frees its port.
func TestOps_CloseFreesThePort(t *testing.T) {
	for _, started := range []bool{false, true} {
		ops, err := server.NewOps(server.OpsOptions{Listen: "127.0.0.1:0", Log: slog.New(slog.DiscardHandler)})
		require.NoError(t, err)
		if started {
			ops.Start()
			code, _ := httpGet(t, "http://"+ops.Addr().String()+"/readyz")
			require.Equal(t, http.StatusOK, code, "nil Ready is ready")
		}
		addr := ops.Addr().String()
		require.NoError(t, ops.Close())
		again, err := server.NewOps(server.OpsOptions{Listen: addr, Log: slog.New(slog.DiscardHandler)})
		require.NoError(t, err, "started=%v: the port is free again", started)
		require.NoError(t, again.Close())
	}
}

// A route mounted with HandleLater answers 503 with Retry-After and
// no-store until its handler is set (a starting replica's CRLs), then the
// handler answers; setting it twice is a programming error.
func TestOps_HandleLaterAnswers503UntilSet(t *testing.T) {
	ops, err := server.NewOps(server.OpsOptions{Listen: "127.0.0.1:0", Log: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { ops.Close() })
	set := ops.HandleLater("GET /crl/")
	ops.Start()
	url := "http://" + ops.Addr().String() + "/crl/gen-1.crl"

	resp, err := http.Get(url)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Equal(t, "starting\n", string(body))
	require.Equal(t, "5", resp.Header.Get("Retry-After"))
	require.Equal(t, "no-store", resp.Header.Get("Cache-Control"))

	set(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("crl " + r.URL.Path)) }))
	code, got := httpGet(t, url)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "crl /crl/gen-1.crl", got)
	require.Panics(t, func() { set(http.NotFoundHandler()) })
}

// The starting route is an operations route like any other: garbage and
// an oversized header are refused by the listener (400, 431), and a
// flood of requests gets the fixed 503 with nothing of the request in
// the log.
func TestOps_HandleLaterRefusesGarbageAndOversizedHeaders(t *testing.T) {
	var logs logbuf.Buffer
	ops, err := server.NewOps(server.OpsOptions{Listen: "127.0.0.1:0", Log: slog.New(slog.NewTextHandler(&logs, nil))})
	require.NoError(t, err)
	t.Cleanup(func() { ops.Close() })
	ops.HandleLater("GET /crl/")
	ops.Start()
	addr := ops.Addr().String()
	raw := func(req string) string {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer c.Close()
		_, err = c.Write([]byte(req))
		require.NoError(t, err)
		line, err := bufio.NewReader(c).ReadString('\n')
		require.NoError(t, err)
		return line
	}
	require.Equal(t, "HTTP/1.1 400 Bad Request\r\n", raw("\xff\xfe GET /crl/x \r\n\r\n"))
	require.Equal(t, "HTTP/1.1 431 Request Header Fields Too Large\r\n",
		raw("GET /crl/gen-1.crl HTTP/1.1\r\nHost: x\r\nX-Pad: "+strings.Repeat("a", 64<<10)+"\r\n\r\n"))
	for i := range 200 {
		code, body := httpGet(t, "http://"+addr+"/crl/attacker-"+strconv.Itoa(i)+"%01%ff.crl")
		require.Equal(t, http.StatusServiceUnavailable, code)
		require.Equal(t, "starting\n", body)
	}
	require.NotContains(t, logs.String(), "attacker")
}

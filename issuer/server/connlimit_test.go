package server_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/meshca/meshca/issuer/server"
)

// dialFrom opens a TCP connection to addr from the loopback address src
// (all of 127.0.0.0/8 is loopback on Linux).
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// closedAtOnce reports whether the server closes c within 3 s without
// sending anything.
func closedAtOnce(t *testing.T, c net.Conn) bool {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(3*time.Second)))
	n, err := c.Read(make([]byte, 1))
	var ne net.Error
	if n > 0 || (err != nil && errors.As(err, &ne) && ne.Timeout()) {
		return false
	}
	return err != nil
}

func healthCheckFrom(t *testing.T, src, addr string) error {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
			return d.DialContext(ctx, "tcp", a)
		}))
	require.NoError(t, err)
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(false))
	return err
}

func gatherText(t *testing.T, p *probeEnv, names ...string) string {
	t.Helper()
	var buf bytes.Buffer
	mfs, err := p.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		for _, n := range names {
			if mf.GetName() == n {
				for _, m := range mf.GetMetric() {
					buf.WriteString(n)
					for _, l := range m.GetLabel() {
						buf.WriteString("{" + l.GetName() + "=" + l.GetValue() + "}")
					}
					switch {
					case m.GetGauge() != nil:
						buf.WriteString(" " + fmtFloat(m.GetGauge().GetValue()))
					case m.GetCounter() != nil:
						buf.WriteString(" " + fmtFloat(m.GetCounter().GetValue()))
					}
					buf.WriteString("\n")
				}
			}
		}
	}
	return buf.String()
}

func TestConnLimit_OneAddressCannotTakeEverySlot(t *testing.T) {
	p := newProbe(t, func(o *server.Options) { o.Limits.MaxConnectionsPerAddress = 3 })
	addr := p.GRPCAddr().String()
	// Three idle TCP connections from 127.0.0.1 (no TLS, no preface) fill
	// that address's share; a fourth is closed at once, not queued.
	for range 3 {
		dialFrom(t, "127.0.0.1", addr)
	}
	// The listener accepts in order, so the fourth is counted last.
	extra := dialFrom(t, "127.0.0.1", addr)
	require.True(t, closedAtOnce(t, extra), "the connection over the per-address cap must be closed at once")
	require.Equal(t, float64(3), metricValue(t, p, "meshca_grpc_connections"))
	// Another address is still served.
	require.NoError(t, healthCheckFrom(t, "127.0.0.2", addr))
	require.Equal(t, "meshca_grpc_connections_refused_total{reason=per_address} 1\nmeshca_grpc_connections_refused_total{reason=per_address_rate} 0\nmeshca_grpc_connections_refused_total{reason=stream_resets} 0\nmeshca_grpc_connections_refused_total{reason=total} 0\n",
		gatherText(t, p, "meshca_grpc_connections_refused_total"))
}

// An address that reconnects faster than its rate, past its burst, has its
// new connections closed as they are accepted, before the TLS handshake
// that an unauthenticated client could otherwise make meshca repeat
// (key exchange and signature) as fast as it reconnects; its connections
// need not be open at once to count. Other addresses are served, and the
// address gets a connection again once its bucket refills.
func TestConnLimit_AnAddressReconnectingFasterThanItsRateIsRefused(t *testing.T) {
	p := newProbe(t, func(o *server.Options) {
		o.Limits.MaxNewConnectionsPerSecondPerAddress, o.Limits.MaxNewConnectionBurstPerAddress = 1, 3
	})
	addr := p.GRPCAddr().String()
	for range 3 {
		c := dialFrom(t, "127.0.0.7", addr)
		require.False(t, closedAtOnce(t, c), "a connection within the burst must be kept")
		c.Close()
	}
	start := time.Now()
	require.True(t, closedAtOnce(t, dialFrom(t, "127.0.0.7", addr)), "a connection past the burst, faster than the rate, must be closed at once")
	require.Equal(t, "meshca_grpc_connections_refused_total{reason=per_address} 0\nmeshca_grpc_connections_refused_total{reason=per_address_rate} 1\nmeshca_grpc_connections_refused_total{reason=stream_resets} 0\nmeshca_grpc_connections_refused_total{reason=total} 0\n",
		gatherText(t, p, "meshca_grpc_connections_refused_total"))
	require.NoError(t, healthCheckFrom(t, "127.0.0.8", addr), "another address keeps its own bucket")
	// One token a second: the address is served again within a few.
	require.Eventually(t, func() bool { return healthCheckFrom(t, "127.0.0.7", addr) == nil }, 5*time.Second, 200*time.Millisecond)
	require.GreaterOrEqual(t, time.Since(start), 500*time.Millisecond, "the bucket refills at the rate, not at once")
	require.Contains(t, p.log.String(), `"reason":"per_address_rate","maxConnections":1024,"maxConnectionsPerAddress":64,"maxNewConnectionsPerSecondPerAddress":1,"maxNewConnectionBurstPerAddress":3`)
	require.NotContains(t, p.log.String(), "127.0.0.7", "the caller's address is not logged")
}

func TestConnLimit_OverTheTotalIsClosedNotQueued(t *testing.T) {
	p := newProbe(t, func(o *server.Options) { o.Limits.MaxConnections, o.Limits.MaxConnectionsPerAddress = 2, 2 })
	addr := p.GRPCAddr().String()
	first := dialFrom(t, "127.0.0.1", addr)
	dialFrom(t, "127.0.0.2", addr)
	for range 3 {
		require.True(t, closedAtOnce(t, dialFrom(t, "127.0.0.3", addr)), "the connection over maxConnections must be closed at once")
	}
	require.Equal(t, float64(2), metricValue(t, p, "meshca_grpc_connections"))
	require.Equal(t, "meshca_grpc_connections_refused_total{reason=per_address} 0\nmeshca_grpc_connections_refused_total{reason=per_address_rate} 0\nmeshca_grpc_connections_refused_total{reason=stream_resets} 0\nmeshca_grpc_connections_refused_total{reason=total} 3\n",
		gatherText(t, p, "meshca_grpc_connections_refused_total"))
	// A closed connection frees its slot.
	first.Close()
	require.Eventually(t, func() bool {
		return metricValue(t, p, "meshca_grpc_connections") == 1
	}, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, healthCheckFrom(t, "127.0.0.3", addr))
	require.Equal(t, 1, strings.Count(p.log.String(), `"msg":"refusing connections over the limit"`), "one warning per 10 s: %s", p.log.String())
	require.NotContains(t, p.log.String(), "127.0.0.3", "the caller's address is not logged")
}

func TestLimits_FlowControlWindowsAdvertised(t *testing.T) {
	p := newProbe(t, nil)
	_, fr := h2c(t, p.GRPCAddr().String())
	s := serverSettings(t, fr)
	require.Equal(t, uint32(16), s[http2.SettingMaxConcurrentStreams])
	require.Equal(t, uint32(64<<10), s[http2.SettingInitialWindowSize])
	// The connection window is raised with a WINDOW_UPDATE on stream 0
	// (RFC 9113 section 6.9.2) right after SETTINGS.
	for {
		f, err := fr.ReadFrame()
		require.NoError(t, err)
		if wu, ok := f.(*http2.WindowUpdateFrame); ok && wu.StreamID == 0 {
			require.Equal(t, uint32(256<<10-65535), wu.Increment)
			return
		}
	}
}

func TestOps_IdleKeepAliveConnectionIsClosed(t *testing.T) {
	r := newRunning(t, func(o *server.Options) { o.Limits.OpsIdleTimeout.Duration = 200 * time.Millisecond })
	c := dialFrom(t, "127.0.0.1", r.OpsAddr().String())
	_, err := c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	require.NoError(t, err)
	require.Contains(t, string(buf[:n]), "200 OK")
	start := time.Now()
	require.True(t, closedByServer(c), "an idle keep-alive connection must be closed")
	require.Less(t, time.Since(start), 3*time.Second)
}

func TestOps_ConnectionOverTheCapIsClosed(t *testing.T) {
	r := newRunning(t, func(o *server.Options) { o.Limits.OpsMaxConnections = 2 })
	addr := r.OpsAddr().String()
	first := dialFrom(t, "127.0.0.1", addr)
	dialFrom(t, "127.0.0.1", addr)
	require.True(t, closedAtOnce(t, dialFrom(t, "127.0.0.1", addr)), "the ops connection over the cap must be closed at once")
	// A closed connection frees its slot.
	first.Close()
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 5*time.Second, 10*time.Millisecond)
}

func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// metricValue is the value of the named gauge's only series, or -1 when it
// is not registered.
func metricValue(t *testing.T, p *probeEnv, name string) float64 {
	t.Helper()
	mfs, err := p.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			require.Len(t, mf.GetMetric(), 1)
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return -1
}

func TestConnLimit_WarnsWhenOneAddressCanTakeEverySlot(t *testing.T) {
	const warning = `"msg":"one source address can take every gRPC connection; set server.limits.maxConnectionsPerAddress below server.limits.maxConnections"`
	p := newProbe(t, func(o *server.Options) { o.Limits.MaxConnections = 20 })
	require.Contains(t, p.log.String(), warning)
	require.Contains(t, p.log.String(), `"maxConnections":20,"maxConnectionsPerAddress":64`)
	p = newProbe(t, nil)
	require.NotContains(t, p.log.String(), warning, "the defaults leave room for other addresses")
}

package server

import (
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	"k8s.io/utils/clock"

	"github.com/meshca/meshca/issuer/ratelimit"
)

// Reasons for refusing a connection: fixed label values, never the
// caller's address.
const (
	refusedPerAddress     = "per_address"
	refusedPerAddressRate = "per_address_rate"
	refusedTotal          = "total"
)

// maxRateAddresses bounds the source addresses whose new connections are
// counted (least recently seen forgotten first).
const maxRateAddresses = 65536

// refuseWarnInterval spaces the warnings about refused connections.
const refuseWarnInterval = 10 * time.Second

// connMetrics count a listener's connections; nil fields are not counted.
type connMetrics struct {
	open    prometheus.Gauge
	refused *prometheus.CounterVec
	closed  *prometheus.CounterVec
}

func newGRPCConnMetrics(reg prometheus.Registerer) connMetrics {
	m := connMetrics{
		open: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshca_grpc_connections",
			Help: "Open connections of the gRPC listener.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshca_grpc_connections_refused_total",
			Help: "Connections of the gRPC listener closed at once because their source address (per_address) or the listener (total) had reached its limit, because their source address opened connections faster than its rate past its burst (per_address_rate), or because three connections of their source address had recently been closed for resetting streams (stream_resets).",
		}, []string{"reason"}),
		closed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshca_grpc_connections_closed_total",
			Help: "Open connections of the gRPC listener that meshca closed for abuse: stream_resets, their streams ended in RST_STREAM faster than server.limits.maxStreamResetsPerSecond past maxStreamResetBurst.",
		}, []string{"reason"}),
	}
	for _, r := range []string{refusedPerAddress, refusedPerAddressRate, refusedTotal, closedStreamResets} {
		m.refused.WithLabelValues(r)
	}
	m.closed.WithLabelValues(closedStreamResets)
	if reg != nil {
		reg.MustRegister(m.open, m.refused, m.closed)
	}
	return m
}

// connLimiter bounds the open connections of a listener in total and per
// source IP address. A connection over either bound is closed as soon as
// it is accepted rather than left waiting in the accept queue (as
// netutil.LimitListener does), so that idle connections from one client
// cannot hold back everyone else's.
type connLimiter struct {
	net.Listener
	name           string
	total, perAddr int
	metrics        connMetrics
	log            *slog.Logger
	warn           rate.Sometimes

	// newConns, when set, holds each source address to a rate of new
	// connections past a burst (refusedPerAddressRate).
	newConns               *ratelimit.Limiter
	newPerSecond, newBurst int

	mu     sync.Mutex
	open   int
	byAddr map[string]int
}

// limitNewConnections holds each source address to perSecond new
// connections past burst: a connection over it is closed as it is
// accepted, before its TLS handshake (whose key exchange and signature
// cost meshca far more than an unauthenticated client pays to reconnect).
func (l *connLimiter) limitNewConnections(perSecond, burst int, clk clock.Clock) {
	l.newPerSecond, l.newBurst = perSecond, burst
	l.newConns = ratelimit.New(ratelimit.Options{
		PerIdentityQPS: float64(perSecond), PerIdentityBurst: burst, MaxIdentities: maxRateAddresses, Clock: clk,
	})
}

// LimitConnections bounds the open connections of ln to total, and to
// perAddr per source IP address (a Unix socket's peers share one address);
// a connection over either bound is closed as soon as it is accepted. Each
// refusal is counted nowhere but logged at most every few seconds under
// name. Every meshca listener that unauthenticated peers can reach uses it.
// A returned connection's NetConn is the accepted one.
func LimitConnections(ln net.Listener, name string, total, perAddr int, log *slog.Logger) net.Listener {
	return newConnLimiter(ln, name, total, perAddr, connMetrics{}, log)
}

func newConnLimiter(ln net.Listener, name string, total, perAddr int, m connMetrics, log *slog.Logger) *connLimiter {
	return &connLimiter{
		Listener: ln, name: name, total: total, perAddr: perAddr, metrics: m, log: log,
		warn:   rate.Sometimes{First: 1, Interval: refuseWarnInterval},
		byAddr: map[string]int{},
	}
}

// sourceIP is the connection's remote IP address without the port.
func sourceIP(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	return c.RemoteAddr().String()
}

// Accept returns the next connection within the limits and closes the
// ones over them.
func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := sourceIP(c)
		l.mu.Lock()
		reason := ""
		switch {
		case l.open >= l.total:
			reason = refusedTotal
		case l.byAddr[ip] >= l.perAddr:
			reason = refusedPerAddress
		case l.newConns != nil && !l.newConns.Allow(ip):
			reason = refusedPerAddressRate
		default:
			l.open++
			l.byAddr[ip]++
		}
		l.mu.Unlock()
		if reason != "" {
			// Counted before the close, so that whoever sees the
			// connection closed also sees it counted.
			if l.metrics.refused != nil {
				l.metrics.refused.WithLabelValues(reason).Inc()
			}
			c.Close()
			// The address is caller input and is not logged.
			l.warn.Do(func() {
				args := []any{"listener", l.name, "reason", reason, "maxConnections", l.total, "maxConnectionsPerAddress", l.perAddr}
				if l.newConns != nil {
					args = append(args, "maxNewConnectionsPerSecondPerAddress", l.newPerSecond, "maxNewConnectionBurstPerAddress", l.newBurst)
				}
				l.log.Warn("refusing connections over the limit", args...)
			})
			continue
		}
		if l.metrics.open != nil {
			l.metrics.open.Inc()
		}
		return &limitedConn{Conn: c, release: func() { l.release(ip) }}, nil
	}
}

func (l *connLimiter) release(ip string) {
	l.mu.Lock()
	l.open--
	if l.byAddr[ip]--; l.byAddr[ip] <= 0 {
		delete(l.byAddr, ip)
	}
	l.mu.Unlock()
	if l.metrics.open != nil {
		l.metrics.open.Dec()
	}
}

// limitedConn gives its slot back when it is first closed.
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

// NetConn is the accepted connection (for its peer credentials).
func (c *limitedConn) NetConn() net.Conn { return c.Conn }

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

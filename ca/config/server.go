package config

import (
	"net"
	"strings"
	"time"
)

// ServerConfig configures the listeners of meshca serve.
type ServerConfig struct {
	// Listen is the gRPC signing port (istiod uses 15012).
	Listen string `json:"listen"`
	// OpsListen serves /healthz, /readyz and /metrics.
	OpsListen string `json:"opsListen"`
	// AdminSocket is the Unix domain socket (unix(7)) through which the CLI
	// reaches a running meshca serve that holds the store: mode 0600, in a
	// directory the meshca user owns. Default: admin.sock next to store.path.
	AdminSocket string `json:"adminSocket"`
	// AdminListen serves the same admin API over TCP with TLS for remote
	// admins (see admin.go); empty (the default) means off.
	AdminListen string `json:"adminListen,omitempty"`
	// AdminIdentities are the SPIFFE IDs whose meshca-issued client
	// certificates may use every admin route on AdminListen.
	AdminIdentities []string `json:"adminIdentities,omitempty"`
	// AdminTokenAudiences are the audiences a Kubernetes token must carry
	// on AdminListen; its user is then authorized by SubjectAccessReview.
	// Default [meshca-admin].
	AdminTokenAudiences []string `json:"adminTokenAudiences,omitempty"`
	// ShutdownTimeout bounds graceful shutdown.
	ShutdownTimeout Duration `json:"shutdownTimeout"`
	// DNSNames and IPAddresses go into meshca's own serving certificate; the
	// host part of Istio's CA_ADDR must be among them (it is the TLS SNI).
	DNSNames    []string `json:"dnsNames"`
	IPAddresses []string `json:"ipAddresses"`
	// ServingCertTTL is the lifetime of that certificate; it renews after two thirds.
	ServingCertTTL Duration `json:"servingCertTTL"`
	// Compliance is default, pqc or fips-140-2 (Istio's COMPLIANCE_POLICY).
	Compliance string `json:"compliance"`
	// RateLimit protects the signing endpoint.
	RateLimit RateLimitConfig `json:"rateLimit"`
	// Limits bound what any caller, authenticated or not, can make the
	// gRPC listener spend.
	Limits LimitsConfig `json:"limits"`
}

// Defaults of server.limits. gRPC decodes a request before any service code
// runs, so the message limit applies before authentication: it leaves room
// for the largest CSR meshca accepts (64 KiB) and the request's metadata.
// The keepalive and connection-age values are istiod's
// (PILOT_KEEPALIVE_MAX_SERVER_CONNECTION_AGE=30m, keepalive 30s/10s, client
// pings no more often than every 15s), so that proxies reconnect, and
// spread over new replicas, the way they do with istiod.
const (
	DefaultMaxRecvMsgSize              = 128 << 10
	DefaultMaxHeaderListSize           = 96 << 10
	DefaultMaxConcurrentStreams        = 16
	DefaultMaxConnections              = 1024
	DefaultMaxConnsPerAddress          = 64
	DefaultInitialWindowSize           = 64 << 10
	DefaultInitialConnWindowSize       = 256 << 10
	DefaultHandshakeTimeout            = 5 * time.Second
	DefaultMaxRequestTimeout           = 30 * time.Second
	DefaultKeepaliveTime               = 30 * time.Second
	DefaultKeepaliveTimeout            = 10 * time.Second
	DefaultKeepaliveMinTime            = 15 * time.Second
	DefaultMaxConnectionIdle           = 5 * time.Minute
	DefaultMaxConnectionAge            = 30 * time.Minute
	DefaultMaxConnectionAgeGrace       = 10 * time.Second
	DefaultMaxStreamResetsPerSec       = 10
	DefaultMaxStreamResetBurst         = 100
	DefaultMaxNewConnsPerSecPerAddress = 10

	DefaultOpsMaxConnections = 64
	DefaultOpsReadTimeout    = 10 * time.Second
	DefaultOpsWriteTimeout   = 30 * time.Second
	DefaultOpsIdleTimeout    = 60 * time.Second
)

// LimitsConfig is server.limits. Zero means the default.
type LimitsConfig struct {
	// MaxRecvMsgSize is the largest request message in bytes; a larger one
	// is refused with ResourceExhausted before it is decoded.
	MaxRecvMsgSize int `json:"maxRecvMsgSize"`
	// MaxHeaderListSize bounds the request headers in bytes (HTTP/2
	// SETTINGS_MAX_HEADER_LIST_SIZE, RFC 9113 section 6.5.2); it must hold a bearer token.
	MaxHeaderListSize int `json:"maxHeaderListSize"`
	// MaxConcurrentStreams is the number of requests in flight on one
	// connection (SETTINGS_MAX_CONCURRENT_STREAMS); clients queue the rest.
	MaxConcurrentStreams int `json:"maxConcurrentStreams"`
	// MaxConnections bounds the open connections of the listener; a
	// connection over the bound is closed at once, not queued.
	MaxConnections int `json:"maxConnections"`
	// MaxConnectionsPerAddress bounds the open connections from one source
	// IP address, so that one client cannot take every slot. kube-proxy
	// keeps pod source addresses; behind a NAT or a proxy that hides them,
	// raise it to the number of clients behind one address. A value at or
	// above MaxConnections lets one address take every connection.
	MaxConnectionsPerAddress int `json:"maxConnectionsPerAddress"`
	// InitialWindowSize and InitialConnWindowSize are the HTTP/2 flow
	// control windows (RFC 9113 section 6.9.2) of a stream and of a
	// connection: how much request data a client may send before meshca
	// reads it. Setting them turns off gRPC's BDP window growth.
	InitialWindowSize     int `json:"initialWindowSize"`
	InitialConnWindowSize int `json:"initialConnWindowSize"`
	// HandshakeTimeout bounds the TLS handshake and HTTP/2 preface of a new
	// connection.
	HandshakeTimeout Duration `json:"handshakeTimeout"`
	// MaxRequestTimeout caps the deadline of every request; a caller's
	// shorter deadline still applies.
	MaxRequestTimeout Duration `json:"maxRequestTimeout"`
	// KeepaliveTime and KeepaliveTimeout: after KeepaliveTime without
	// activity the server pings, and closes the connection when the ping is
	// not answered within KeepaliveTimeout.
	KeepaliveTime    Duration `json:"keepaliveTime"`
	KeepaliveTimeout Duration `json:"keepaliveTimeout"`
	// KeepaliveMinTime is the shortest interval at which clients may ping;
	// a client that pings more often is disconnected (GOAWAY
	// ENHANCE_YOUR_CALM).
	KeepaliveMinTime Duration `json:"keepaliveMinTime"`
	// MaxConnectionIdle closes a connection without requests for this long.
	MaxConnectionIdle Duration `json:"maxConnectionIdle"`
	// MaxConnectionAge closes every connection after this long (with
	// GOAWAY; requests in flight get MaxConnectionAgeGrace to finish), so
	// that clients reconnect and load spreads over all replicas.
	MaxConnectionAge      Duration `json:"maxConnectionAge"`
	MaxConnectionAgeGrace Duration `json:"maxConnectionAgeGrace"`
	// MaxStreamResetsPerSecond and MaxStreamResetBurst bound the streams
	// of each connection that end in RST_STREAM (RFC 9113 section 6.4),
	// sent by the client or by meshca: past the burst, a connection that
	// goes on resetting streams faster than the rate is closed. After three
	// such closes of one source address its new connections are refused
	// until one close is forgiven, every burst/rate seconds. Each reset
	// stream costs meshca its headers and a handler; gRPC bounds the
	// handlers running at once, not their rate (HTTP/2 "rapid reset",
	// CVE-2023-44487). The burst must hold a client cancelling every
	// request it has in flight (maxConcurrentStreams); unset, it is the
	// larger of 100 and maxConcurrentStreams.
	MaxStreamResetsPerSecond int `json:"maxStreamResetsPerSecond"`
	MaxStreamResetBurst      int `json:"maxStreamResetBurst"`
	// MaxNewConnectionsPerSecondPerAddress and MaxNewConnectionBurstPerAddress
	// bound the rate at which one source IP address may open connections:
	// past the burst, a connection accepted faster than the rate is closed
	// at once, before its TLS handshake, whose key exchange and signature
	// an unauthenticated client can otherwise make meshca repeat as fast as
	// it reconnects. Unset, the burst is maxConnectionsPerAddress, so that
	// an address may open all its connections at once.
	MaxNewConnectionsPerSecondPerAddress int `json:"maxNewConnectionsPerSecondPerAddress"`
	MaxNewConnectionBurstPerAddress      int `json:"maxNewConnectionBurstPerAddress"`

	// OpsMaxConnections bounds the open connections of the operations
	// listener (/healthz, /readyz, /metrics); one over it is closed at once.
	OpsMaxConnections int `json:"opsMaxConnections"`
	// OpsReadTimeout, OpsWriteTimeout and OpsIdleTimeout bound reading a
	// request, writing a response and an idle keep-alive connection on the
	// operations listener.
	OpsReadTimeout  Duration `json:"opsReadTimeout"`
	OpsWriteTimeout Duration `json:"opsWriteTimeout"`
	OpsIdleTimeout  Duration `json:"opsIdleTimeout"`
}

// Init fills every zero limit with its default.
func (l *LimitsConfig) Init() {
	setInt := func(p *int, d int) {
		if *p == 0 {
			*p = d
		}
	}
	setDur := func(p *Duration, d time.Duration) {
		if p.Duration == 0 {
			p.Duration = d
		}
	}
	setInt(&l.MaxRecvMsgSize, DefaultMaxRecvMsgSize)
	setInt(&l.MaxHeaderListSize, DefaultMaxHeaderListSize)
	setInt(&l.MaxConcurrentStreams, DefaultMaxConcurrentStreams)
	setInt(&l.MaxConnections, DefaultMaxConnections)
	setInt(&l.MaxConnectionsPerAddress, DefaultMaxConnsPerAddress)
	setInt(&l.InitialWindowSize, DefaultInitialWindowSize)
	setInt(&l.InitialConnWindowSize, DefaultInitialConnWindowSize)
	setInt(&l.MaxStreamResetsPerSecond, DefaultMaxStreamResetsPerSec)
	// The burst holds a client cancelling every request it has in flight.
	setInt(&l.MaxStreamResetBurst, max(DefaultMaxStreamResetBurst, l.MaxConcurrentStreams))
	setInt(&l.MaxNewConnectionsPerSecondPerAddress, DefaultMaxNewConnsPerSecPerAddress)
	setInt(&l.MaxNewConnectionBurstPerAddress, min(max(l.MaxConnectionsPerAddress, 1), 1<<20))
	setInt(&l.OpsMaxConnections, DefaultOpsMaxConnections)
	setDur(&l.OpsReadTimeout, DefaultOpsReadTimeout)
	setDur(&l.OpsWriteTimeout, DefaultOpsWriteTimeout)
	setDur(&l.OpsIdleTimeout, DefaultOpsIdleTimeout)
	setDur(&l.HandshakeTimeout, DefaultHandshakeTimeout)
	setDur(&l.MaxRequestTimeout, DefaultMaxRequestTimeout)
	setDur(&l.KeepaliveTime, DefaultKeepaliveTime)
	setDur(&l.KeepaliveTimeout, DefaultKeepaliveTimeout)
	setDur(&l.KeepaliveMinTime, DefaultKeepaliveMinTime)
	setDur(&l.MaxConnectionIdle, DefaultMaxConnectionIdle)
	setDur(&l.MaxConnectionAge, DefaultMaxConnectionAge)
	setDur(&l.MaxConnectionAgeGrace, DefaultMaxConnectionAgeGrace)
}

// Bounds of server.limits that validation enforces.
const (
	minRecvMsgSize    = 72 << 10 // a 64 KiB CSR plus the request's metadata
	maxRecvMsgSize    = 4 << 20  // gRPC's own default
	minHeaderListSize = 8 << 10
	maxHeaderListSize = 1 << 20
	// gRPC ignores a window below the HTTP/2 default of 64 KiB.
	minWindowSize = 64 << 10
	maxWindowSize = 16 << 20
)

func (l LimitsConfig) validate(add func(string, string, ...any)) {
	const k = "server.limits."
	if l.MaxRecvMsgSize < minRecvMsgSize || l.MaxRecvMsgSize > maxRecvMsgSize {
		add(k+"maxRecvMsgSize", "%d is out of range; use %d to %d bytes (a CSR may be 64 KiB; default %d)", l.MaxRecvMsgSize, minRecvMsgSize, maxRecvMsgSize, DefaultMaxRecvMsgSize)
	}
	if l.MaxHeaderListSize < minHeaderListSize || l.MaxHeaderListSize > maxHeaderListSize {
		add(k+"maxHeaderListSize", "%d is out of range; use %d to %d bytes (it must hold a bearer token; default %d)", l.MaxHeaderListSize, minHeaderListSize, maxHeaderListSize, DefaultMaxHeaderListSize)
	}
	if l.MaxConcurrentStreams < 1 || l.MaxConcurrentStreams > 1<<20 {
		add(k+"maxConcurrentStreams", "%d is out of range; use 1 to %d (default %d)", l.MaxConcurrentStreams, 1<<20, DefaultMaxConcurrentStreams)
	}
	if l.MaxConnections < 1 {
		add(k+"maxConnections", "%d must be positive (default %d)", l.MaxConnections, DefaultMaxConnections)
	}
	if l.MaxConnectionsPerAddress < 1 {
		add(k+"maxConnectionsPerAddress", "%d must be positive; raise it when clients share a source address behind a NAT or proxy (default %d)", l.MaxConnectionsPerAddress, DefaultMaxConnsPerAddress)
	}
	if l.InitialWindowSize < minWindowSize || l.InitialWindowSize > maxWindowSize {
		add(k+"initialWindowSize", "%d is out of range; use %d to %d bytes (default %d)", l.InitialWindowSize, minWindowSize, maxWindowSize, DefaultInitialWindowSize)
	}
	if l.InitialConnWindowSize < l.InitialWindowSize || l.InitialConnWindowSize > maxWindowSize {
		add(k+"initialConnWindowSize", "%d is out of range; use initialWindowSize (%d) to %d bytes (default %d)", l.InitialConnWindowSize, l.InitialWindowSize, maxWindowSize, DefaultInitialConnWindowSize)
	}
	if l.MaxStreamResetsPerSecond < 1 || l.MaxStreamResetsPerSecond > 1<<20 {
		add(k+"maxStreamResetsPerSecond", "%d is out of range; use 1 to %d (default %d)", l.MaxStreamResetsPerSecond, 1<<20, DefaultMaxStreamResetsPerSec)
	}
	if l.MaxStreamResetBurst < l.MaxConcurrentStreams || l.MaxStreamResetBurst > 1<<20 {
		add(k+"maxStreamResetBurst", "%d is out of range; use maxConcurrentStreams (%d), so that a client may cancel every request it has in flight, to %d (default the larger of %d and maxConcurrentStreams)", l.MaxStreamResetBurst, l.MaxConcurrentStreams, 1<<20, DefaultMaxStreamResetBurst)
	}
	if l.MaxNewConnectionsPerSecondPerAddress < 1 || l.MaxNewConnectionsPerSecondPerAddress > 1<<20 {
		add(k+"maxNewConnectionsPerSecondPerAddress", "%d is out of range; use 1 to %d (default %d)", l.MaxNewConnectionsPerSecondPerAddress, 1<<20, DefaultMaxNewConnsPerSecPerAddress)
	}
	if l.MaxNewConnectionBurstPerAddress < 1 || l.MaxNewConnectionBurstPerAddress > 1<<20 {
		add(k+"maxNewConnectionBurstPerAddress", "%d is out of range; use 1 to %d (default maxConnectionsPerAddress, %d)", l.MaxNewConnectionBurstPerAddress, 1<<20, l.MaxConnectionsPerAddress)
	}
	if l.OpsMaxConnections < 1 || l.OpsMaxConnections > 1<<16 {
		add(k+"opsMaxConnections", "%d is out of range; use 1 to %d (default %d)", l.OpsMaxConnections, 1<<16, DefaultOpsMaxConnections)
	}
	for _, d := range []struct {
		key      string
		v        time.Duration
		min, max time.Duration
	}{
		{"handshakeTimeout", l.HandshakeTimeout.Duration, 100 * time.Millisecond, 2 * time.Minute},
		{"maxRequestTimeout", l.MaxRequestTimeout.Duration, 100 * time.Millisecond, 10 * time.Minute},
		{"keepaliveTime", l.KeepaliveTime.Duration, time.Second, 24 * time.Hour},
		{"keepaliveTimeout", l.KeepaliveTimeout.Duration, time.Second, time.Hour},
		{"keepaliveMinTime", l.KeepaliveMinTime.Duration, time.Second, 24 * time.Hour},
		{"maxConnectionIdle", l.MaxConnectionIdle.Duration, time.Second, 24 * time.Hour},
		{"maxConnectionAge", l.MaxConnectionAge.Duration, time.Second, 7 * 24 * time.Hour},
		{"maxConnectionAgeGrace", l.MaxConnectionAgeGrace.Duration, 100 * time.Millisecond, time.Hour},
		{"opsReadTimeout", l.OpsReadTimeout.Duration, 100 * time.Millisecond, 10 * time.Minute},
		{"opsWriteTimeout", l.OpsWriteTimeout.Duration, 100 * time.Millisecond, 10 * time.Minute},
		{"opsIdleTimeout", l.OpsIdleTimeout.Duration, 100 * time.Millisecond, time.Hour},
	} {
		if d.v < d.min || d.v > d.max {
			add(k+d.key, "%s is out of range; use %s to %s (0 means the default)", d.v, d.min, d.max)
		}
	}
}

// RateLimitConfig configures per-identity and global limits.
type RateLimitConfig struct {
	// PerIdentityQPS is each SPIFFE identity's sustained rate. All replicas
	// of a Deployment share one identity, so keep it well above the rate of
	// a mass restart of your largest Deployment.
	PerIdentityQPS float64 `json:"perIdentityQPS"`
	// PerIdentityBurst is each identity's bucket size.
	PerIdentityBurst int `json:"perIdentityBurst"`
	// MaxConcurrent bounds signing in flight across all callers.
	MaxConcurrent int `json:"maxConcurrent"`
	// QueueTimeout is how long a request may wait for a slot.
	QueueTimeout Duration `json:"queueTimeout"`
}

func (s *ServerConfig) init() {
	if s.Listen == "" {
		s.Listen = DefaultListen
	}
	if s.OpsListen == "" {
		s.OpsListen = DefaultOpsListen
	}
	if s.ShutdownTimeout.Duration == 0 {
		s.ShutdownTimeout.Duration = DefaultShutdownTimeout
	}
	if s.DNSNames == nil {
		s.DNSNames = []string{"meshca.istio-system.svc", "meshca.istio-system.svc.cluster.local", "localhost"}
	}
	if s.IPAddresses == nil {
		s.IPAddresses = []string{"127.0.0.1", "::1"}
	}
	if s.ServingCertTTL.Duration == 0 {
		s.ServingCertTTL.Duration = 24 * time.Hour
	}
	if s.Compliance == "" {
		s.Compliance = "default"
	}
	if s.RateLimit.PerIdentityQPS == 0 {
		s.RateLimit.PerIdentityQPS = 50
	}
	if s.RateLimit.PerIdentityBurst == 0 {
		s.RateLimit.PerIdentityBurst = 500
	}
	if s.RateLimit.MaxConcurrent == 0 {
		s.RateLimit.MaxConcurrent = 256
	}
	if s.RateLimit.QueueTimeout.Duration == 0 {
		s.RateLimit.QueueTimeout.Duration = 2 * time.Second
	}
	s.Limits.Init()
	s.initAdmin()
}

// MaxAdminSocketPath is the longest socket path every platform accepts:
// sockaddr_un's sun_path holds 108 bytes on Linux (unix(7)) but 104 on the
// BSDs and macOS, including the terminating NUL.
const MaxAdminSocketPath = 103

func (s ServerConfig) validate(add func(string, string, ...any)) {
	switch {
	case s.AdminSocket == "":
		add("server.adminSocket", "must be set (default: admin.sock next to store.path, or with store.type postgres next to the configuration file)")
	case len(s.AdminSocket) > MaxAdminSocketPath:
		add("server.adminSocket", "%q is %d bytes; a Unix socket path holds at most %d: choose a shorter path", s.AdminSocket, len(s.AdminSocket), MaxAdminSocketPath)
	case strings.ContainsRune(s.AdminSocket, 0) || strings.HasSuffix(s.AdminSocket, "/"):
		add("server.adminSocket", "%q is not a file path (e.g. /var/lib/meshca/admin.sock)", s.AdminSocket)
	}
	for _, kv := range [][2]string{{"server.listen", s.Listen}, {"server.opsListen", s.OpsListen}} {
		if _, _, err := net.SplitHostPort(kv[1]); err != nil {
			add(kv[0], "%q is not host:port (e.g. :15012 or 127.0.0.1:15012)", kv[1])
		}
	}
	switch s.Compliance {
	case "default", "pqc", "fips-140-2":
	default:
		add("server.compliance", "%q is not default, pqc or fips-140-2", s.Compliance)
	}
	for _, ip := range s.IPAddresses {
		if net.ParseIP(ip) == nil {
			add("server.ipAddresses", "%q is not an IP address", ip)
		}
	}
	if len(s.DNSNames) == 0 && len(s.IPAddresses) == 0 {
		add("server.dnsNames", "list at least one DNS name (the host part of Istio's CA_ADDR) or IP address")
	}
	if s.ServingCertTTL.Duration < 10*time.Minute {
		add("server.servingCertTTL", "%s is too short; use at least 10m", s.ServingCertTTL.Duration)
	}
	if s.RateLimit.PerIdentityQPS < 0 || s.RateLimit.PerIdentityBurst < 0 || s.RateLimit.MaxConcurrent < 0 {
		add("server.rateLimit", "values must be positive (0 means the default)")
	}
	s.Limits.validate(add)
}

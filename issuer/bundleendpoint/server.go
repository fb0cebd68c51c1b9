package bundleendpoint

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/meshca/meshca/issuer/server"
	"github.com/meshca/meshca/issuer/tlsconfig"
)

// Limits of the endpoint: anyone who reaches it may call it, without
// authentication, so every cost is bounded.
const (
	// readHeaderTimeout also bounds the TLS handshake (net/http uses the
	// shortest of its read and write timeouts for it).
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 10 * time.Second
	maxHeaderBytes    = 8 << 10
	shutdownTimeout   = 5 * time.Second
)

// ServerOptions configure a Server.
type ServerOptions struct {
	// Listen is the address, e.g. ":8443".
	Listen  string
	Handler http.Handler
	// Mode is the TLS compliance mode (server.compliance): the default
	// offers X25519MLKEM768 first.
	Mode tlsconfig.Mode
	// GetCertificate is the serving certificate: https_web's files
	// (FileCertificate) or https_spiffe's SVID (tlsconfig.ServingCert).
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// MaxConnections bounds the open connections, a quarter of them per
	// source address.
	MaxConnections int
	Log            *slog.Logger
}

// Server is the HTTPS listener of the bundle endpoint.
type Server struct {
	ln   net.Listener
	http *http.Server
}

// Listen binds the address.
func Listen(o ServerOptions) (*Server, error) {
	if o.Handler == nil || o.GetCertificate == nil {
		return nil, errors.New("bundleendpoint: a server needs a handler and a certificate")
	}
	if o.MaxConnections < 4 {
		return nil, fmt.Errorf("bundleendpoint: %d connections are too few", o.MaxConnections)
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	cfg, err := tlsconfig.Server(o.Mode, o.GetCertificate)
	if err != nil {
		return nil, err
	}
	// A public endpoint: no client certificates, HTTP/1.1 only (one
	// request at a time per connection, bounded by the timeouts).
	cfg.ClientAuth = tls.NoClientCert
	cfg.NextProtos = []string{"http/1.1"}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return nil, fmt.Errorf("bundleEndpoint.address: %w", err)
	}
	limited := server.LimitConnections(ln, "bundle-endpoint", o.MaxConnections, max(1, o.MaxConnections/4), o.Log)
	hs := &http.Server{
		Handler:           o.Handler,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		// No HTTP/2 (the TLS configuration offers only http/1.1).
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ErrorLog:     server.HTTPErrorLog(o.Log, "bundle-endpoint", slog.LevelDebug, nil),
	}
	// One request per connection: consumers fetch once per refresh hint
	// (minutes), and clients that open a new transport for every fetch
	// (go-spiffe's federation.FetchBundle does) would otherwise leave
	// idle connections holding the endpoint's slots until idleTimeout.
	hs.SetKeepAlivesEnabled(false)
	return &Server{ln: tls.NewListener(limited, cfg), http: hs}, nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve answers until ctx ends, then shuts down gracefully.
func (s *Server) Serve(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if err := s.http.Shutdown(sctx); err != nil {
			_ = s.http.Close()
		}
	}()
	err := s.http.Serve(s.ln)
	if errors.Is(err, http.ErrServerClosed) {
		<-done
		return nil
	}
	return err
}

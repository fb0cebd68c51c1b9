// Package admin is meshca serve's administration endpoint: HTTP/1.1 with
// JSON bodies, through which the CLI reads issuance records, signs,
// revokes, lists revocations, fetches CRLs and reads the CA's status while
// the service holds the store's exclusive lock. It owns both listeners
// (a Unix domain socket next to the store, and an optional TCP listener
// with TLS for remote admins), who may call which route, the audit line of
// every call, and both ends of the wire (Server and Client); it holds no CA
// logic: signing goes through the running authority (same policy, record
// and audit), revoking through the CRL manager, reading through the store.
//
// On the socket, authentication is the socket file's permissions (0600, in
// a directory only meshca's user can write); on Linux the server also
// checks the peer's user with SO_PEERCRED (unix(7)) and records it as the
// requester. On TCP, a caller presents a client certificate meshca issued
// whose SPIFFE ID is an admin identity, or a Kubernetes token whose user
// RBAC allows the route's verb on its meshca.io resource
// (SubjectAccessReview). The endpoint never serves private keys: for
// 'meshca cacerts' the socket gives the public files and where the key is,
// and the CLI reads the key file itself.
package admin

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/meshca/meshca/ca/audit"
	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/issuer/server"
)

// Limits of the admin endpoint. Its callers are meshca's own user, but a
// stuck or buggy client still must not hold the service's resources.
const (
	// MaxBodyBytes bounds a request body: a CSR is at most 64 KiB, 88 KiB
	// in base64.
	MaxBodyBytes       = 256 << 10
	maxHeaderBytes     = 16 << 10
	maxConns           = 16
	maxConnsPerAddress = 4
	readHeaderTimeout  = 5 * time.Second
	readTimeout        = 30 * time.Second
	// writeTimeout bounds a whole response; listing a large store over a
	// local socket takes well under it.
	writeTimeout    = 10 * time.Minute
	idleTimeout     = time.Minute
	signTimeout     = 30 * time.Second
	shutdownTimeout = 5 * time.Second
)

var errPeerUnsupported = errors.New("peer credentials are not available on this platform")

// Signer is the running authority.
type Signer interface {
	Sign(ctx context.Context, req authority.Request) (*authority.Result, error)
}

// Records reads the issuance records of the running service's store.
type Records interface {
	GetIssuance(ctx context.Context, serial string) (store.Issuance, error)
	ListIssuances(ctx context.Context, fn func(store.Issuance) bool) error
}

// Options configure a Server.
type Options struct {
	// Socket is the socket path (server.adminSocket).
	Socket  string
	Signer  Signer
	Records Records
	// Revoker, Revocations, CRLs and Status serve the revocation, CRL and
	// status routes; a nil one answers 503 (revocations) or an empty
	// answer (CRLs, status).
	Revoker     Revoker
	Revocations RevocationLister
	CRLs        CRLSource
	Status      StatusSource
	// CACerts serves the public cacerts files on the socket; nil answers 503.
	CACerts CACertsSource
	// Rotations serves the rotation routes; nil answers 503.
	Rotations   Rotations
	TrustDomain spiffeid.TrustDomain
	Log         *slog.Logger
	// Audit receives one line per call; nil means audit.New(Log).
	Audit *audit.Logger
	// Registerer receives meshca_admin_requests_total; nil means none.
	Registerer prometheus.Registerer
}

func (o *Options) defaults() {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Audit == nil {
		o.Audit = audit.New(o.Log)
	}
}

func (o *Options) handler() *handler {
	return &handler{
		signer: o.Signer, records: o.Records, revoker: o.Revoker, revocations: o.Revocations, crls: o.CRLs, statusSrc: o.Status, cacerts: o.CACerts, rotations: o.Rotations,
		td: o.TrustDomain, log: o.Log, audit: o.Audit,
	}
}

// Server serves the admin endpoint.
type Server struct {
	l    net.Listener
	path string
	// tls, for the TCP listener, wraps each accepted connection.
	tls  *tls.Config
	http *http.Server
	log  *slog.Logger
	done chan struct{}
	once sync.Once
	err  error
}

type peerKey struct{}

// peer is who connected, from the kernel.
type peer struct {
	uid int
	err error
}

// Listen binds the socket; Serve then answers on it.
func Listen(o Options) (*Server, error) {
	o.defaults()
	l, err := listenSocket(o.Socket)
	if err != nil {
		return nil, err
	}
	h := o.handler()
	s := &Server{l: l, path: l.path, log: o.Log, done: make(chan struct{})}
	s.http = newHTTPServer(o.Log, instrument(o.Registerer, "socket", recoverPanics(o.Log, h.routes(socketAuth{euid: os.Geteuid()}, true))))
	s.http.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		if lc, ok := c.(interface{ NetConn() net.Conn }); ok {
			c = lc.NetConn()
		}
		uid, err := peerUID(c)
		return context.WithValue(ctx, peerKey{}, peer{uid: uid, err: err})
	}
	return s, nil
}

// newHTTPServer is an admin HTTP server with the limits every admin
// listener shares.
func newHTTPServer(log *slog.Logger, h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          server.HTTPErrorLog(log, "admin", slog.LevelWarn, nil),
	}
}

// Path is the socket's path, or the TCP listener's address.
func (s *Server) Path() string { return s.path }

// Serve answers until ctx ends, then shuts down and removes the socket.
func (s *Server) Serve(ctx context.Context) error {
	go func() {
		<-ctx.Done()
		s.Close()
	}()
	// A slot is taken before TLS and authentication: on TCP each source
	// address gets a share, so that unauthenticated peers cannot hold
	// every slot; the socket's peers are meshca's own user.
	var l net.Listener
	if s.tls != nil {
		l = tls.NewListener(server.LimitConnections(s.l, "admin", maxConns, maxConnsPerAddress, s.log), s.tls)
	} else {
		l = server.LimitConnections(s.l, "admin-socket", maxConns, maxConns, s.log)
	}
	err := s.http.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		<-s.done
		return s.err
	}
	return err
}

// Close stops the server gracefully (requests in flight get a few seconds)
// and removes the socket. It is safe to call more than once.
func (s *Server) Close() error {
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if err := s.http.Shutdown(ctx); err != nil {
			_ = s.http.Close()
		}
		// Shutdown closed the listener already (net.ErrClosed); the socket
		// listener's Close also removes the socket file.
		if err := s.l.Close(); !errors.Is(err, net.ErrClosed) {
			s.err = err
		}
		close(s.done)
	})
	<-s.done
	return s.err
}

// requester names the peer as the offline CLI names its user: "cli:" and
// the user name, else the uid.
func requester(p peer) string {
	if p.err != nil {
		return "cli:unknown"
	}
	if u, err := user.LookupId(strconv.Itoa(p.uid)); err == nil {
		return "cli:" + u.Username
	}
	return fmt.Sprintf("cli:uid:%d", p.uid)
}

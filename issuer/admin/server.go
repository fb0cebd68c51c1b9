// Package admin is meshca serve's local administration endpoint: HTTP/1.1
// with JSON bodies over a Unix domain socket next to the store, through
// which the CLI reads issuance records and signs while the service holds
// the store's exclusive lock. It owns the socket's lifecycle and both ends
// of the wire (Server and Client); it holds no CA logic: signing goes
// through the running authority (same policy, record and audit), reading
// through its store.
//
// Authentication is the socket file's permissions (0600, in a directory
// only meshca's user can write); on Linux the server also checks the
// peer's user with SO_PEERCRED (unix(7)) and records it as the requester.
// The endpoint never serves private keys.
package admin

import (
	"context"
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

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/store"
)

// Limits of the admin endpoint. Its callers are meshca's own user, but a
// stuck or buggy client still must not hold the service's resources.
const (
	// MaxBodyBytes bounds a request body: a CSR is at most 64 KiB, 88 KiB
	// in base64.
	MaxBodyBytes      = 256 << 10
	maxHeaderBytes    = 16 << 10
	maxConns          = 16
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 30 * time.Second
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
	Socket      string
	Signer      Signer
	Records     Records
	TrustDomain spiffeid.TrustDomain
	Log         *slog.Logger
	// Registerer receives meshca_admin_requests_total; nil means none.
	Registerer prometheus.Registerer
}

// Server serves the admin endpoint.
type Server struct {
	l    *socketListener
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
	if o.Log == nil {
		o.Log = slog.Default()
	}
	l, err := listenSocket(o.Socket)
	if err != nil {
		return nil, err
	}
	h := &handler{signer: o.Signer, records: o.Records, td: o.TrustDomain, log: o.Log, euid: os.Geteuid()}
	s := &Server{l: l, log: o.Log, done: make(chan struct{})}
	s.http = &http.Server{
		Handler:           instrument(o.Registerer, recoverPanics(o.Log, h.routes())),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(o.Log.Handler(), slog.LevelWarn),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if bc, ok := c.(*boundedConn); ok {
				c = bc.Conn
			}
			uid, err := peerUID(c)
			return context.WithValue(ctx, peerKey{}, peer{uid: uid, err: err})
		},
	}
	return s, nil
}

// Path is the socket's path.
func (s *Server) Path() string { return s.l.path }

// Serve answers until ctx ends, then shuts down and removes the socket.
func (s *Server) Serve(ctx context.Context) error {
	go func() {
		<-ctx.Done()
		s.Close()
	}()
	err := s.http.Serve(newBoundedListener(s.l, maxConns))
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
		s.err = s.l.Close()
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

// boundedListener holds at most n connections open; further ones wait in
// the kernel's accept queue.
type boundedListener struct {
	net.Listener
	slots chan struct{}
}

func newBoundedListener(l net.Listener, n int) *boundedListener {
	return &boundedListener{Listener: l, slots: make(chan struct{}, n)}
}

func (b *boundedListener) Accept() (net.Conn, error) {
	b.slots <- struct{}{}
	c, err := b.Listener.Accept()
	if err != nil {
		<-b.slots
		return nil, err
	}
	return &boundedConn{Conn: c, release: func() { <-b.slots }}, nil
}

type boundedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *boundedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

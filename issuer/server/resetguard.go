package server

import (
	"encoding/binary"
	"log/slog"
	"net"
	"sync"

	"golang.org/x/net/http2"
	"golang.org/x/time/rate"
	"google.golang.org/grpc/credentials"
	"k8s.io/utils/clock"

	"github.com/meshca/meshca/issuer/ratelimit"
)

// closedStreamResets labels the connections closed, and refused, for
// resetting streams too often (meshca_grpc_connections_closed_total,
// meshca_grpc_connections_refused_total).
const closedStreamResets = "stream_resets"

// maxResetAddresses bounds the source addresses whose closes are
// remembered; a budget unused long enough to be full again is forgotten.
const maxResetAddresses = 65536

// closesBeforeRefusal is how many connections of one source address may be
// closed for resetting streams before its new connections are refused
// (the burst of its budget of closes); one comes back every
// maxStreamResetBurst/maxStreamResetsPerSecond (10 s by default).
const closesBeforeRefusal = 3

// resetGuard bounds how often the streams of a gRPC connection may end in
// RST_STREAM (RFC 9113 section 6.4). A reset stream costs the server its
// HPACK-decoded headers, a stream and usually a handler, and the client
// nothing: HTTP/2 "rapid reset" (CVE-2023-44487) opens streams and cancels
// each at once. gRPC bounds the handlers running at a time
// (maxConcurrentStreams), not their rate, and sends no GOAWAY for it. A
// client can also make the server reset streams for it (streams over
// maxConcurrentStreams are refused with RST_STREAM REFUSED_STREAM, a
// malformed frame on a stream resets it, even on a stream never opened),
// so the resets meshca writes count as well, except NO_ERROR and
// REFUSED_STREAM. gRPC sends NO_ERROR for a stream it has answered before
// the client finished sending (RFC 9113 section 8.1), a stream the client
// paid for like any other request; REFUSED_STREAM for streams over
// maxConcurrentStreams, which a client may open before it has read the
// server's SETTINGS (RFC 9113 section 6.5.3) and may retry (section 8.7),
// and which cost meshca their headers but no handler.
//
// Each connection has its own budget, so that a client sharing a source
// address with an abuser (behind a NAT, a gateway) keeps its connection
// within its own. A connection past it is closed. An address whose
// connections were closed closesBeforeRefusal times in a short while has
// its new connections closed as they are accepted, before their TLS
// handshake, until its budget of closes refills at the configured rate:
// reconnecting gains an attacker one connection's burst per
// maxStreamResetBurst/maxStreamResetsPerSecond.
//
// The guard sees a connection's HTTP/2 frames below gRPC: after TLS (it
// wraps the connection the transport credentials return) or, without
// credentials, as accepted. It reads only the 9-byte frame headers
// (RFC 9113 section 4.1) and the 4-byte error code of the RST_STREAM
// frames meshca writes, and never holds any other payload.
type resetGuard struct {
	perSecond, burst int
	closes           *ratelimit.Limiter // source IP → its connections closed for resets
	clock            clock.PassiveClock
	closed, refused  func() // count a connection closed or refused by the guard
	log              *slog.Logger
	warn             rate.Sometimes
}

func newResetGuard(perSecond, burst int, closed, refused func(), log *slog.Logger) *resetGuard {
	return &resetGuard{
		perSecond: perSecond, burst: burst,
		closes: ratelimit.New(ratelimit.Options{
			PerIdentityQPS: float64(perSecond) / float64(burst), PerIdentityBurst: closesBeforeRefusal, MaxIdentities: maxResetAddresses,
		}),
		clock:  clock.RealClock{},
		closed: closed, refused: refused, log: log,
		warn: rate.Sometimes{First: 1, Interval: refuseWarnInterval},
	}
}

// wrap guards c, whose first bytes read are the client's connection
// preface (RFC 9113 section 3.4); raw is the accepted connection under it
// (c itself without TLS), which the guard closes; addr is its source IP.
func (g *resetGuard) wrap(c, raw net.Conn, addr string) net.Conn {
	return &resetGuardConn{
		Conn: c, raw: raw, g: g, addr: addr, budget: rate.NewLimiter(rate.Limit(g.perSecond), g.burst),
		in: frameScanner{preface: len(http2.ClientPreface), everyCode: true},
	}
}

// frameScanner follows the frame boundaries of one direction of an HTTP/2
// connection through reads or writes of any size, and counts its
// RST_STREAM frames: all of them (everyCode), or those whose error code is
// neither NO_ERROR nor REFUSED_STREAM.
type frameScanner struct {
	everyCode bool
	preface   int // bytes of the client preface still to pass
	hdr       [9]byte
	nhdr      int // bytes of hdr read
	payload   int // bytes of the current frame's payload still to pass
	// code collects the error code of an RST_STREAM frame whose header
	// was read (inCode), ncode bytes of it so far.
	inCode bool
	code   [4]byte
	ncode  int
}

// scan passes b and returns the RST_STREAM frames it completed that count.
func (s *frameScanner) scan(b []byte) (resets int) {
	for len(b) > 0 {
		switch {
		case s.preface > 0:
			n := min(s.preface, len(b))
			s.preface -= n
			b = b[n:]
		case s.payload > 0:
			n := min(s.payload, len(b))
			if s.inCode {
				k := copy(s.code[s.ncode:], b[:n])
				if s.ncode += k; s.ncode == len(s.code) {
					s.inCode = false
					switch http2.ErrCode(binary.BigEndian.Uint32(s.code[:])) {
					case http2.ErrCodeNo, http2.ErrCodeRefusedStream:
					default:
						resets++
					}
				}
			}
			s.payload -= n
			b = b[n:]
		default:
			n := copy(s.hdr[s.nhdr:], b)
			s.nhdr += n
			b = b[n:]
			if s.nhdr < len(s.hdr) {
				return resets
			}
			s.nhdr = 0
			s.payload = int(s.hdr[0])<<16 | int(s.hdr[1])<<8 | int(s.hdr[2])
			if http2.FrameType(s.hdr[3]) == http2.FrameRSTStream {
				if s.everyCode || s.payload != len(s.code) {
					resets++
				} else {
					s.inCode, s.ncode = true, 0
				}
			}
		}
	}
	return resets
}

// resetGuardConn is a guarded connection. gRPC reads it from one goroutine
// and writes it from another; each direction has its own scanner and the
// budget is safe for both.
type resetGuardConn struct {
	net.Conn
	raw     net.Conn
	g       *resetGuard
	addr    string
	budget  *rate.Limiter
	in, out frameScanner
	once    sync.Once
}

// NetConn is the connection the guard wraps.
func (c *resetGuardConn) NetConn() net.Conn { return c.Conn }

func (c *resetGuardConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if r := c.in.scan(p[:n]); r > 0 && !c.allow(r) {
		return 0, net.ErrClosed
	}
	return n, err
}

func (c *resetGuardConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if r := c.out.scan(p[:n]); r > 0 && !c.allow(r) {
		return n, net.ErrClosed
	}
	return n, err
}

// allow takes r resets from the connection's budget; when the budget does
// not hold them it closes the connection, takes one close from the
// address's budget of closes, and reports false.
func (c *resetGuardConn) allow(r int) bool {
	if c.budget.AllowN(c.g.clock.Now(), r) {
		return true
	}
	c.once.Do(func() {
		// Counted before the close, so that whoever sees the connection
		// closed also sees it counted. The accepted connection is closed,
		// not TLS's, whose close_notify could wait for a peer that does
		// not read; gRPC then closes the rest.
		c.g.closed()
		c.g.closes.Allow(c.addr)
		c.raw.Close()
		c.g.warned("closing a connection that resets too many streams")
	})
	return false
}

// warned logs msg at most every few seconds. The peer's address is caller
// input and is not logged.
func (g *resetGuard) warned(msg string) {
	g.warn.Do(func() {
		g.log.Warn(msg, "listener", "grpc", "maxStreamResetsPerSecond", g.perSecond, "maxStreamResetBurst", g.burst)
	})
}

// guardedListener closes, as it accepts them, the connections of an
// address whose budget of closes is spent, and guards the others itself
// when gRPC runs without transport credentials (it then reads the frames
// from the accepted connection); with credentials, guardedCreds does.
type guardedListener struct {
	net.Listener
	g         *resetGuard
	wrapConns bool
}

func (l guardedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		addr := sourceIP(c)
		if l.g.closes.Spent(addr) {
			l.g.refused()
			c.Close()
			l.g.warned("refusing the connections of an address whose connections reset too many streams")
			continue
		}
		if l.wrapConns {
			return l.g.wrap(c, c, addr), nil
		}
		return c, nil
	}
}

// guardedCreds guards the connection each server handshake returns.
type guardedCreds struct {
	credentials.TransportCredentials
	g *resetGuard
}

func (c guardedCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		return conn, info, err
	}
	return c.g.wrap(conn, raw, sourceIP(raw)), info, nil
}

func (c guardedCreds) Clone() credentials.TransportCredentials {
	return guardedCreds{TransportCredentials: c.TransportCredentials.Clone(), g: c.g}
}

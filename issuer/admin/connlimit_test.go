package admin

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// startRemote serves a TCP admin listener with alice as the only admin,
// whose certificate it returns.
func startRemote(t *testing.T) (*Server, tls.Certificate, tls.Certificate, *memRevoker) {
	t.Helper()
	srvCert := selfSigned(t, "", true)
	alice := selfSigned(t, "spiffe://cluster.local/ns/ops/sa/alice", false)
	rv := &memRevoker{}
	s := serveRemote(t, srvCert, Options{Revoker: rv, Revocations: rv, Records: cliIssued(alice)}, nil)
	return s, srvCert, alice, rv
}

// serveRemote serves a TCP admin listener on 127.0.0.1 with srvCert, o,
// alice as the only admin and the test authenticators, until the test
// ends; nextProtos is the TLS configuration's ALPN list.
func serveRemote(t *testing.T, srvCert tls.Certificate, o Options, nextProtos []string) *Server {
	t.Helper()
	s, err := ListenTCP(RemoteOptions{
		Options: o,
		Listen:  "127.0.0.1:0",
		TLS:     &tls.Config{Certificates: []tls.Certificate{srvCert}, ClientAuth: tls.RequestClientCert, NextProtos: nextProtos},
		Admins:  []string{"spiffe://cluster.local/ns/ops/sa/alice"}, ClientCert: certAuthn{}, Tokens: tokenAuthn{}, Access: access{},
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	return s
}

// Unauthenticated peers that connect and stay silent take at most
// maxConnsPerAddress slots each: the connections over that share are
// closed at once, and an admin from another address still gets in.
func TestRemote_SilentPeersCannotLockOutAdmins(t *testing.T) {
	s, srvCert, alice, rv := startRemote(t)
	from := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 2 * time.Second}
	var hogs []net.Conn
	t.Cleanup(func() {
		for _, c := range hogs {
			c.Close()
		}
	})
	for range maxConns {
		c, err := from.Dial("tcp", s.Path())
		require.NoError(t, err)
		hogs = append(hogs, c)
	}
	// The first maxConnsPerAddress stay open (silent, within the
	// handshake timeout); every later one is closed by the server.
	closed := 0
	for i, c := range hogs {
		require.NoError(t, c.SetReadDeadline(time.Now().Add(300*time.Millisecond)))
		_, err := c.Read(make([]byte, 1))
		if err == io.EOF {
			closed++
			continue
		}
		require.Less(t, i, maxConnsPerAddress, "connection %d: %v", i, err)
		ne, ok := err.(net.Error)
		require.True(t, ok && ne.Timeout(), "connection %d: %v", i, err)
	}
	require.Equal(t, maxConns-maxConnsPerAddress, closed)

	roots := x509.NewCertPool()
	roots.AddCert(srvCert.Leaf)
	c := NewRemoteClient(s.Path(), &tls.Config{RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{alice}}, "")
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	recs, err := c.Revoke(ctx, RevokeBody{Serial: "0a", Reason: "keyCompromise"})
	require.NoError(t, err)
	require.Len(t, recs, 1)
	require.Equal(t, 1, rv.calls)
}

// A refused request ends its connection (Connection: close), so that an
// unauthenticated peer cannot hold a slot for the idle timeout; an
// authorised one keeps its connection alive.
func TestRemote_RefusedRequestClosesTheConnection(t *testing.T) {
	s, srvCert, alice, _ := startRemote(t)
	roots := x509.NewCertPool()
	roots.AddCert(srvCert.Leaf)
	for _, tc := range []struct {
		name      string
		cert      []tls.Certificate
		token     string
		path      string
		code      int
		keepAlive bool
	}{
		{"no credentials", nil, "", pathStatus, http.StatusUnauthorized, false},
		{"rbac denied", nil, "mallory", pathStatus, http.StatusForbidden, false},
		{"unknown route", nil, "", "/nope", http.StatusNotFound, false},
		{"admin", []tls.Certificate{alice}, "", pathStatus, http.StatusOK, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", s.Path(), &tls.Config{RootCAs: roots, ServerName: "localhost", Certificates: tc.cert})
			require.NoError(t, err)
			defer conn.Close()
			req, _ := http.NewRequest(http.MethodGet, "https://localhost"+tc.path, nil)
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			require.NoError(t, req.Write(conn))
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, req)
			require.NoError(t, err)
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			require.Equal(t, tc.code, resp.StatusCode)
			require.Equal(t, !tc.keepAlive, resp.Close, "Connection: close")
			require.NoError(t, conn.SetReadDeadline(time.Now().Add(time.Second)))
			_, err = br.ReadByte()
			if tc.keepAlive {
				ne, ok := err.(net.Error)
				require.True(t, ok && ne.Timeout(), "the admin's connection stays open: %v", err)
			} else {
				require.ErrorIs(t, err, io.EOF, "the server closed the connection")
			}
		})
	}
}

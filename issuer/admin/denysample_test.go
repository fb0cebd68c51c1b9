package admin

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/ca/audit"
)

// Any workload with a certificate of this meshca authenticates on the admin
// port; one that is not an admin is refused at no cost to itself, as fast
// as it can send. Writing a line for each refusal would let it rotate older
// records out of the size-bound audit file, so those lines are sampled per
// requester and reason, and the next line written says how many were left
// out.
func TestRemote_ANonAdminsRefusalsAreSampledInTheAuditLog(t *testing.T) {
	srvCert := selfSigned(t, "", true)
	bob := selfSigned(t, "spiffe://cluster.local/ns/ops/sa/bob", false)
	var logs syncBuffer
	clk := testingclock.NewFakeClock(time.Now())
	s := serveRemote(t, srvCert, Options{Revoker: &memRevoker{}, Records: cliIssued(bob),
		Audit: audit.New(slog.New(slog.NewJSONHandler(&logs, nil))).WithClock(clk)}, nil)

	roots := x509.NewCertPool()
	roots.AddCert(srvCert.Leaf)
	c := NewRemoteClient(s.Path(), &tls.Config{RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{bob}}, "")
	t.Cleanup(func() { c.Close() })
	lines := func() int {
		return strings.Count(logs.String(), `"requester":"admin:spiffe://cluster.local/ns/ops/sa/bob","code":403,"reason":"not_an_admin"`)
	}
	const sent = 100
	for range sent {
		_, err := c.Status(context.Background())
		require.Equal(t, 403, err.(*StatusError).Code)
	}
	require.Equal(t, audit.CallerDenialBurst, lines(), "a burst of one caller's refusals writes at most the burst")

	clk.Step(time.Second)
	_, err := c.Status(context.Background())
	require.Equal(t, 403, err.(*StatusError).Code)
	require.Equal(t, audit.CallerDenialBurst+1, lines())
	require.Contains(t, logs.String(), `"reason":"not_an_admin","message":"spiffe://cluster.local/ns/ops/sa/bob is not an admin identity of this meshca (server.adminIdentities)","suppressed":90}`)
}

// A peer that fails the TLS handshake has not authenticated: net/http's
// line about it quotes the ALPN names the peer offered (a 50 KB hello made
// a 250 KB line), so those lines are cut and sampled
// (server.HTTPErrorLog).
func TestRemote_FailedHandshakesCannotFloodTheLog(t *testing.T) {
	srvCert := selfSigned(t, "", true)
	var logs syncBuffer
	s := serveRemote(t, srvCert, Options{Revoker: &memRevoker{}, Records: cliIssued(), Log: slog.New(slog.NewJSONHandler(&logs, nil))}, nil)

	protos := make([]string, 200)
	for i := range protos {
		protos[i] = strings.Repeat("\x1b", 250)
	}
	const sent = 30
	for range sent {
		c, err := tls.Dial("tcp", s.Path(), &tls.Config{InsecureSkipVerify: true, NextProtos: protos})
		if err == nil {
			c.Close()
		}
		require.Error(t, err, "no protocol in common")
	}
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "TLS handshake error") }, 5*time.Second, 10*time.Millisecond)
	lines := strings.Count(logs.String(), "TLS handshake error")
	require.LessOrEqual(t, lines, 20, "sampled: a burst of %d, then one a second", 10)
	require.Less(t, logs.Len(), lines*4000, "each line is cut")
}

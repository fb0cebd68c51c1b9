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
	s, err := ListenTCP(RemoteOptions{
		Options: Options{Revoker: &memRevoker{}, Records: cliIssued(bob),
			Audit: audit.New(slog.New(slog.NewJSONHandler(&logs, nil))).WithClock(clk)},
		Listen: "127.0.0.1:0",
		TLS:    &tls.Config{Certificates: []tls.Certificate{srvCert}, ClientAuth: tls.RequestClientCert},
		Admins: []string{"spiffe://cluster.local/ns/ops/sa/alice"}, ClientCert: certAuthn{}, Tokens: tokenAuthn{}, Access: access{},
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })

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
	_, err = c.Status(context.Background())
	require.Equal(t, 403, err.(*StatusError).Code)
	require.Equal(t, audit.CallerDenialBurst+1, lines())
	require.Contains(t, logs.String(), `"reason":"not_an_admin","message":"spiffe://cluster.local/ns/ops/sa/bob is not an admin identity of this meshca (server.adminIdentities)","suppressed":90}`)
}

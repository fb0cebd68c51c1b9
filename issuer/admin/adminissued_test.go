package admin

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"log/slog"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/store"
)

// An admin client certificate must be one that meshca issued through its
// admin socket or offline ('meshca sign', requester "cli:…"): a certificate
// with the same admin SPIFFE ID issued through the Istio workload port (to
// a pod running under that ServiceAccount) or meshca's own serving
// certificate is refused with 403 and an audited reason.
func TestRemote_AdminCertificateMustBeIssuedLocally(t *testing.T) {
	const aliceID = "spiffe://cluster.local/ns/ops/sa/alice"
	srvCert := selfSigned(t, "", true)
	local, workload, serving, unknown := selfSigned(t, aliceID, false), selfSigned(t, aliceID, false), selfSigned(t, aliceID, false), selfSigned(t, aliceID, false)
	serial := func(c tls.Certificate) string { return hex.EncodeToString(c.Leaf.SerialNumber.Bytes()) }
	recs := &records{recs: []store.Issuance{
		{Serial: serial(local), Identity: aliceID, Requester: "cli:ops"},
		{Serial: serial(workload), Identity: aliceID, Requester: "istio:client_certificate:" + aliceID},
		{Serial: serial(serving), Identity: aliceID, Requester: "meshca"},
	}}
	rv := &memRevoker{}
	var logs syncBuffer
	s, err := ListenTCP(RemoteOptions{
		Options: Options{Revoker: rv, Revocations: rv, Records: recs, Log: slog.New(slog.NewJSONHandler(&logs, nil))},
		Listen:  "127.0.0.1:0",
		TLS:     &tls.Config{Certificates: []tls.Certificate{srvCert}, ClientAuth: tls.RequestClientCert},
		Admins:  []string{aliceID}, ClientCert: certAuthn{},
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	roots := x509.NewCertPool()
	roots.AddCert(srvCert.Leaf)
	revoke := func(cert tls.Certificate) error {
		c := NewRemoteClient(s.Path(), &tls.Config{RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{cert}}, "")
		defer c.Close()
		_, err := c.Revoke(context.Background(), RevokeBody{Serial: "0a", Reason: "keyCompromise"})
		return err
	}
	require.NoError(t, revoke(local))
	const msg = "the client certificate of " + aliceID + " was not issued for admin use: mint admin certificates with 'meshca sign' (on the admin socket or offline with --dir), not through a workload front door"
	for _, c := range []tls.Certificate{workload, serving} {
		require.Equal(t, &StatusError{Code: http.StatusForbidden, Message: msg}, revoke(c))
	}
	require.Equal(t, &StatusError{Code: http.StatusForbidden, Message: msg}, revoke(unknown), "a certificate without a record is not an admin certificate")
	require.Equal(t, 1, rv.calls, "refused certificates never reach the revoker")
	require.Contains(t, logs.String(), `"event":"admin.denied","action":"revoke revocations","route":"POST /v1/revocations","requester":"admin:`+aliceID+`","code":403,"reason":"not_admin_issued"`)

	_, err = ListenTCP(RemoteOptions{Listen: "127.0.0.1:0", TLS: &tls.Config{Certificates: []tls.Certificate{srvCert}}, ClientCert: certAuthn{}, Admins: []string{aliceID}})
	require.EqualError(t, err, "admin TCP listener: client certificates need the issuance records (to tell admin certificates from workload ones)")
}

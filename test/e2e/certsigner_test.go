package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	pb "istio.io/api/security/v1alpha1"
)

// TestIstioEndpoint_CertSigners runs meshca serve with one named signer in
// its configuration file: a request naming it gets a classical leaf (the CA
// is catalyst) capped at the signer's 2h, "" gets the default catalyst
// leaf, an unknown name is refused with InvalidArgument and audited, and the
// signer label of the metric holds only default, the configured name and
// unknown.
func TestIstioEndpoint_CertSigners(t *testing.T) {
	dir := initCA(t)
	appendYAML(t, dir, "authentication:\n  certSigners:\n    - name: gateways\n      profile: classical\n      maxCertTTL: 2h\n")
	csrPath, keyPEM := writeCSRWithKey(t, t.TempDir(), workloadID)
	clientChain := meshca(t, "sign", "--dir", dir, "--csr", csrPath, "--identity", workloadID)
	s := startServe(t, dir)
	s.waitReady(t, 10*time.Second)
	rootPEM, err := os.ReadFile(filepath.Join(dir, "root-cert.pem"))
	require.NoError(t, err)
	cert, err := tls.X509KeyPair([]byte(clientChain), keyPEM)
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(rootPEM))
	conn, err := grpc.NewClient(s.grpc, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: roots, ServerName: servingName, Certificates: []tls.Certificate{cert},
	})))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	client := pb.NewIstioCertificateServiceClient(conn)
	call := func(signer string, ttl int64) ([]string, error) {
		csr, _ := agentStyleCSR(t, workloadID)
		meta, err := structpb.NewStruct(map[string]any{"CertSigner": signer})
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := client.CreateCertificate(ctx, &pb.IstioCertificateRequest{Csr: string(csr), ValidityDuration: ttl, Metadata: meta})
		return resp.GetCertChain(), err
	}
	catalyst := func(c *x509.Certificate) bool {
		for _, e := range c.Extensions {
			if e.Id.Equal(oidAltSigValue) {
				return true
			}
		}
		return false
	}

	chain, err := call("gateways", 0)
	require.NoError(t, err, s.logs())
	require.Len(t, chain, 3)
	leaf := splitPEM(t, chain[0])[0]
	require.Equal(t, []string{workloadID}, uriStrings(leaf))
	require.False(t, catalyst(leaf), "the gateways signer issues classical leaves")
	require.Equal(t, 2*time.Hour+2*time.Minute, leaf.NotAfter.Sub(leaf.NotBefore), "24h lowered to the signer's maxCertTTL")
	require.Equal(t, string(rootPEM), chain[2])
	_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: poolOf(splitPEM(t, chain[1])...), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	require.NoError(t, err)

	chain, err = call("", 3600)
	require.NoError(t, err)
	leaf = splitPEM(t, chain[0])[0]
	require.True(t, catalyst(leaf), "the default signer issues the CA's catalyst leaves")
	require.Equal(t, time.Hour+2*time.Minute, leaf.NotAfter.Sub(leaf.NotBefore))

	_, err = call("attacker-signer", 3600)
	require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
	require.Equal(t, `CertSigner "attacker-signer" is not configured at this CA; unset ISTIO_META_CERT_SIGNER for the default signer or use a configured one`, status.Convert(err).Message())
	// stderr is read by another goroutine: wait for the audit line.
	waitFor(t, 5*time.Second, "the unknown_cert_signer audit line", func() bool {
		return strings.Contains(s.logs(), `"reason":"unknown_cert_signer"`)
	})

	m := s.metrics(t)
	require.ElementsMatch(t, []string{"default", "gateways", "unknown"}, labelValues(m, "meshca_istio_cert_signer_requests_total", "signer"))
	for k := range m {
		require.NotContains(t, k, "attacker-", "caller input became a label")
	}
	require.Equal(t, 3.0, sum(m, "meshca_istio_cert_signer_requests_total"))
	require.Contains(t, s.logs(), `"requester":"istio:client_certificate:`+workloadID+` signer:gateways"`, "the audit line names the signer")
}

func poolOf(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

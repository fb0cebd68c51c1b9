package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/structpb"
	pb "istio.io/api/security/v1alpha1"
)

// writeCSRWithKey writes a P-256 CSR for id and returns its path and the PEM key.
func writeCSRWithKey(t *testing.T, dir, id string) (string, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	u, _ := url.Parse(id)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{}, URIs: []*url.URL{u}}, key)
	require.NoError(t, err)
	p := filepath.Join(dir, "client.csr")
	require.NoError(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), 0o600))
	kd, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	return p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd})
}

// callIstioCA dials addr like istio-agent (TLS, SNI = server name, mesh root)
// with a client certificate and requests a certificate for id.
func callIstioCA(t *testing.T, addr, serverName string, rootPEM, certPEM, keyPEM []byte, id string) []string {
	t.Helper()
	chain, _ := callIstioCAWithKey(t, addr, serverName, rootPEM, certPEM, keyPEM, id)
	return chain
}

// callIstioCAWithKey is callIstioCA that also returns the PEM key of the
// new certificate.
func callIstioCAWithKey(t *testing.T, addr, serverName string, rootPEM, certPEM, keyPEM []byte, id string) ([]string, []byte) {
	t.Helper()
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(rootPEM))
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: roots, ServerName: serverName, Certificates: []tls.Certificate{cert},
	})))
	require.NoError(t, err)
	defer conn.Close()
	csrPath, newKey := writeCSRWithKey(t, t.TempDir(), id)
	csr, err := os.ReadFile(csrPath)
	require.NoError(t, err)
	meta, _ := structpb.NewStruct(map[string]any{"CertSigner": ""})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := pb.NewIstioCertificateServiceClient(conn).CreateCertificate(ctx, &pb.IstioCertificateRequest{
		Csr: string(csr), ValidityDuration: 3600, Metadata: meta,
	})
	require.NoError(t, err)
	return resp.CertChain, newKey
}

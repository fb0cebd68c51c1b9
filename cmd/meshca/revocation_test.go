package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	pb "istio.io/api/security/v1alpha1"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/crl"
)

type lockedBuffer struct {
	mu sync.Mutex
	strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Builder.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Builder.String()
}

func p256CSR(t *testing.T, id string) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	u, err := url.Parse(id)
	require.NoError(t, err)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), key
}

// TestFrontDoor_RevokedClientCertificateIsRefusedOnTheNextRequest: the
// front door that serve wires refuses a client certificate on the first
// request after its revocation, although the authenticator remembers
// verified certificates for a minute, with Unauthenticated and the audit
// reason authn_revoked_certificate; the workload cannot renew with it.
func TestFrontDoor_RevokedClientCertificateIsRefusedOnTheNextRequest(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	_, err := runMeshca(t, "init", "--dir", dir, "--profile", "classical")
	require.NoError(t, err)
	cfg := config.Defaults(dir)
	cfg.Server.Listen = "127.0.0.1:0"
	var logs lockedBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reg := prometheus.NewRegistry()
	rt, _, err := openCA(ctx, cfg, log, reg)
	require.NoError(t, err)
	defer rt.Close()

	mgr, err := crl.NewManager(crl.Options{Store: rt.Store, Validity: 24 * time.Hour, Log: log})
	require.NoError(t, err)
	require.NoError(t, mgr.Start(ctx))

	door, err := newIstioFrontDoor(ctx, cfg, rt, nil, nil, mgr, log, reg)
	require.NoError(t, err)
	gs := grpc.NewServer(grpc.Creds(door.creds))
	door.service.Register(gs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go gs.Serve(lis)
	defer gs.Stop()

	// The workload's first certificate, signed by the CLI's path.
	const id = "spiffe://cluster.local/ns/shop/sa/cart"
	csr, key := p256CSR(t, id)
	res, err := rt.Authority.Sign(ctx, authority.Request{CSR: csr, Identity: mustURL(t, id), TTL: time.Hour, Requester: "test"})
	require.NoError(t, err)
	leaf := firstCert(t, res.Chain)
	serial := hex.EncodeToString(leaf.SerialNumber.Bytes())

	roots := x509.NewCertPool()
	roots.AddCert(rt.Authority.Material().Bundle.Roots[0])
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: roots, ServerName: "localhost",
		Certificates: []tls.Certificate{{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}},
	})))
	require.NoError(t, err)
	defer conn.Close()
	client := pb.NewIstioCertificateServiceClient(conn)
	renew := func() error {
		csr, _ := p256CSR(t, id)
		meta, _ := structpb.NewStruct(map[string]any{})
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		defer ccancel()
		_, err := client.CreateCertificate(cctx, &pb.IstioCertificateRequest{Csr: string(csr), ValidityDuration: 3600, Metadata: meta})
		return err
	}
	// Authenticates (and is now remembered as verified).
	require.NoError(t, renew())
	require.NoError(t, renew())

	recs, err := mgr.Revoke(ctx, crl.Request{Serial: serial, Reason: store.ReasonKeyCompromise, Requester: "test"})
	require.NoError(t, err)
	require.Len(t, recs, 1)

	// The very next request, on the same connection: refused.
	err = renew()
	require.Equal(t, codes.Unauthenticated, status.Code(err), "%v", err)
	require.Contains(t, logs.String(), `"reason":"authn_revoked_certificate"`)
	// It stays refused: no renewal with a revoked certificate.
	require.Equal(t, codes.Unauthenticated, status.Code(renew()))
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	require.NoError(t, err)
	return u
}

func firstCert(t *testing.T, chain []string) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode([]byte(chain[0]))
	require.NotNil(t, b)
	c, err := x509.ParseCertificate(b.Bytes)
	require.NoError(t, err)
	return c
}

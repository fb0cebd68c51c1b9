package istio_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/types/known/structpb"
	pb "istio.io/api/security/v1alpha1"

	"github.com/meshca/meshca/ca/audit"
	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/issuer/authn"
	"github.com/meshca/meshca/issuer/istio"
	"github.com/meshca/meshca/issuer/ratelimit"
	"github.com/meshca/meshca/issuer/tlsconfig"
	"github.com/meshca/meshca/rotation/intermediate"
	"github.com/meshca/meshca/test/logbuf"
	"k8s.io/utils/clock"
)

const trustDomain = "cluster.local"

// env is a real CA (file root, softkms, bbolt) behind the real gRPC service
// on a loopback TLS listener.
type env struct {
	rt      *authority.Runtime
	addr    string
	roots   *x509.CertPool
	rootPEM []byte
	reg     *prometheus.Registry
	audit   logbuf.Buffer
}

type envOptions struct {
	mode         tlsconfig.Mode
	limiter      *ratelimit.Limiter
	authn        istio.Authenticator
	impersonator istio.Impersonator
	unavailable  func(error) bool
	// auditClock drives the audit sampler (nil: the real clock).
	auditClock clock.PassiveClock
	// certSigners is authentication.certSigners, built as serve builds it.
	certSigners []config.CertSignerConfig
	// separate names the certSigners that get their own intermediate: an
	// intermediate.Manager of their lineage on the shared store, keys and
	// root, and an engine of their own (as serve builds them).
	separate []string
	// engines receives each separate signer's engine (nil: not kept).
	engines map[string]*authority.Authority
}

func (e *env) auditLog() string { return e.audit.String() }

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Defaults(dir)
	cfg.Authentication.CertSigners = o.certSigners
	cfg.Init()
	require.NoError(t, cfg.Validate())
	signers, err := istio.CertSignersFromConfig(cfg)
	require.NoError(t, err)
	km, err := keys.Open(context.Background(), keys.Config{Type: "softkms", Dir: dir})
	require.NoError(t, err)
	signer, p, err := km.Create("root-tmp", keys.ECP256)
	require.NoError(t, err)
	require.NoError(t, os.Rename(p, filepath.Join(dir, config.RootKeyFile)))
	rc, err := root.NewSelfSignedRoot(signer, "test root", "meshca-test", 24*time.Hour*365, time.Now())
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(cfg.Root.File.RootCert, root.EncodePEM(rc), 0o644))

	e := &env{reg: prometheus.NewRegistry(), rootPEM: root.EncodePEM(rc)}
	log := slog.New(slog.NewJSONHandler(&e.audit, nil))
	rt, err := openCA(context.Background(), cfg, log, e.reg)
	require.NoError(t, err)
	t.Cleanup(func() { rt.Close() })
	e.rt = rt
	for _, name := range o.separate {
		for i := range signers {
			if signers[i].Name != name {
				continue
			}
			scfg := *cfg
			scfg.Intermediate.CommonName = cfg.Intermediate.CommonName + " signer " + name
			m := intermediate.New(intermediate.Options{Config: &scfg, Keys: rt.Keys, Store: rt.Store, Root: rt.Root, Signer: name, Log: log})
			mat, err := m.Start(context.Background())
			require.NoError(t, err)
			a := authority.New(mat, signers[i].Policy, rt.Store, authority.WithAudit(audit.New(log)), authority.WithProfile(cfg.Issuance.Profile))
			signers[i].Engine = a
			if o.engines != nil {
				o.engines[name] = a
			}
		}
	}
	e.roots = x509.NewCertPool()
	e.roots.AddCert(rc)

	serving := &tlsconfig.ServingCert{Authority: rt.Authority, DNSNames: []string{"meshca.istio-system.svc"}, TTL: time.Hour}
	require.NoError(t, serving.Start(t.Context()))
	if o.mode == "" {
		o.mode = tlsconfig.Default
	}
	tlsCfg, err := tlsconfig.Server(o.mode, serving.GetCertificate)
	require.NoError(t, err)
	if o.authn == nil {
		o.authn = authn.Chain{&authn.ClientCert{Trust: rt.Authority, Records: rt.Store, TrustDomain: trustDomain}}
	}
	al := audit.New(log)
	if o.auditClock != nil {
		al = al.WithClock(o.auditClock)
	}
	svc := istio.New(istio.Options{
		Signer: rt.Authority, Authenticator: o.authn, Impersonator: o.impersonator, Limiter: o.limiter,
		Audit: al, Registerer: e.reg, Unavailable: o.unavailable, CertSigners: signers,
	})
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsCfg)))
	svc.Register(g)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go g.Serve(ln)
	t.Cleanup(g.Stop)
	e.addr = ln.Addr().String()
	return e
}

// client dials like istio-agent: TLS with SNI = the CA_ADDR host, verifying
// meshca's serving certificate against the mesh root.
type client struct {
	pb.IstioCertificateServiceClient
	conn  *grpc.ClientConn
	state *tls.ConnectionState
	mu    sync.Mutex
}

func (e *env) dial(t *testing.T, mutate func(*tls.Config)) *client {
	t.Helper()
	c := &client{}
	cfg := &tls.Config{RootCAs: e.roots, ServerName: "meshca.istio-system.svc", MinVersion: tls.VersionTLS12}
	if mutate != nil {
		mutate(cfg)
	}
	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	c.conn = conn
	c.IstioCertificateServiceClient = pb.NewIstioCertificateServiceClient(conn)
	return c
}

// CreateCertificate records the TLS state of the connection that served the call.
func (c *client) CreateCertificate(ctx context.Context, req *pb.IstioCertificateRequest, opts ...grpc.CallOption) (*pb.IstioCertificateResponse, error) {
	var p peer.Peer
	resp, err := c.IstioCertificateServiceClient.CreateCertificate(ctx, req, append(opts, grpc.Peer(&p))...)
	if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
		c.mu.Lock()
		c.state = &ti.State
		c.mu.Unlock()
	}
	return resp, err
}

func (c *client) connState() *tls.ConnectionState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

func withToken(ctx context.Context, token, cluster string) context.Context {
	md := metadata.Pairs()
	if token != "" {
		md.Set("authorization", "Bearer "+token)
	}
	if cluster != "" {
		md.Set("clusterid", cluster)
	}
	return metadata.NewOutgoingContext(ctx, md)
}

func request(t *testing.T, csr []byte, ttl int64, meta map[string]any) *pb.IstioCertificateRequest {
	t.Helper()
	if meta == nil {
		meta = map[string]any{"CertSigner": ""}
	}
	s, err := structpb.NewStruct(meta)
	require.NoError(t, err)
	return &pb.IstioCertificateRequest{Csr: string(csr), ValidityDuration: ttl, Metadata: s}
}

func spiffeID(ns, sa string) string { return "spiffe://" + trustDomain + "/ns/" + ns + "/sa/" + sa }

// ztunnelCSR is ECDSA P-256 with one non-critical URI SAN and an empty subject.
func ztunnelCSR(t *testing.T, id string) ([]byte, crypto.Signer) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return csrFor(t, k, &x509.CertificateRequest{URIs: []*url.URL{mustURL(t, id)}}), k
}

// agentCSR is RSA-2048 with Organization [""] like istio-agent's.
func agentCSR(t *testing.T, id string) ([]byte, crypto.Signer) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	return csrFor(t, k, &x509.CertificateRequest{Subject: pkix.Name{Organization: []string{""}}, URIs: []*url.URL{mustURL(t, id)}}), k
}

func csrFor(t *testing.T, k crypto.Signer, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, k)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	require.NoError(t, err)
	return u
}

// clientCert issues a workload certificate through the engine (as `meshca
// sign` would) for use as a TLS client certificate.
func (e *env) clientCert(t *testing.T, id string) tls.Certificate {
	t.Helper()
	csr, key := ztunnelCSR(t, id)
	res, err := e.rt.Authority.Sign(context.Background(), authority.Request{CSR: csr, Identity: mustURL(t, id), Requester: "test"})
	require.NoError(t, err)
	leaf, err := res.Leaf()
	require.NoError(t, err)
	c := tls.Certificate{PrivateKey: key, Leaf: leaf}
	for _, el := range res.Chain[:len(res.Chain)-1] {
		b, _ := pem.Decode([]byte(el))
		c.Certificate = append(c.Certificate, b.Bytes)
	}
	return c
}

func (e *env) records(t *testing.T) int {
	t.Helper()
	n := 0
	require.NoError(t, e.rt.Store.ListIssuances(context.Background(), func(r store.Issuance) bool {
		if r.Profile != authority.ProfileServing {
			n++
		}
		return true
	}))
	return n
}

// parseAsIstioAgent applies istio-agent's rules: more than one element, the
// last one is the trust bundle.
func parseAsIstioAgent(t *testing.T, chain []string) (leaf *x509.Certificate, roots []*x509.Certificate) {
	t.Helper()
	require.Greater(t, len(chain), 1, "istio-agent fails on a chain of one element")
	l, err := root.ParseCertificates([]byte(chain[0]))
	require.NoError(t, err)
	require.Len(t, l, 1)
	roots, err = root.ParseCertificates([]byte(chain[len(chain)-1]))
	require.NoError(t, err)
	return l[0], roots
}

// parseAsZtunnel applies ztunnel's rules: each middle element is exactly one
// certificate; the last element may hold several roots.
func parseAsZtunnel(t *testing.T, chain []string) []*x509.Certificate {
	t.Helper()
	var inters []*x509.Certificate
	for _, el := range chain[1 : len(chain)-1] {
		b, rest := pem.Decode([]byte(el))
		require.NotNil(t, b)
		require.Empty(t, bytes.TrimSpace(rest), "a middle element must hold exactly one certificate")
		c, err := x509.ParseCertificate(b.Bytes)
		require.NoError(t, err)
		inters = append(inters, c)
	}
	return inters
}

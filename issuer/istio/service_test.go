package istio_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshca/meshca/issuer/authn"
	"github.com/meshca/meshca/issuer/ratelimit"
	"github.com/meshca/meshca/issuer/tlsconfig"
)

func TestCreateCertificate_ClientCertificateRenewalInEveryComplianceMode(t *testing.T) {
	shapes := map[string]func(*testing.T, string) ([]byte, any){
		"ztunnel ECDSA P-256":  func(t *testing.T, id string) ([]byte, any) { c, k := ztunnelCSR(t, id); return c, k },
		"istio-agent RSA-2048": func(t *testing.T, id string) ([]byte, any) { c, k := agentCSR(t, id); return c, k },
	}
	for _, mode := range tlsconfig.Modes {
		t.Run(string(mode), func(t *testing.T) {
			e := newEnv(t, envOptions{mode: mode})
			id := spiffeID("default", "app")
			cert := e.clientCert(t, id)
			c := e.dial(t, func(cfg *tls.Config) { cfg.Certificates = []tls.Certificate{cert} })
			for name, shape := range shapes {
				t.Run(name, func(t *testing.T) {
					csr, _ := shape(t, id)
					resp, err := c.CreateCertificate(context.Background(), request(t, csr, 3600, nil))
					require.NoError(t, err)
					leaf, roots := parseAsIstioAgent(t, resp.CertChain)
					inters := parseAsZtunnel(t, resp.CertChain)
					require.Len(t, resp.CertChain, 3)
					require.Len(t, inters, 1)
					require.Len(t, roots, 1)
					require.Equal(t, []*url.URL{mustURL(t, id)}, leaf.URIs)
					require.Equal(t, time.Hour+2*time.Minute, leaf.NotAfter.Sub(leaf.NotBefore))
					rp, ip := x509.NewCertPool(), x509.NewCertPool()
					rp.AddCert(roots[0])
					ip.AddCert(inters[0])
					_, err = leaf.Verify(x509.VerifyOptions{Roots: rp, Intermediates: ip, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
					require.NoError(t, err)
				})
			}
			st := c.connState()
			require.NotNil(t, st)
			switch mode {
			case tlsconfig.Default, tlsconfig.PQC:
				require.Equal(t, tls.X25519MLKEM768, st.CurveID)
				if mode == tlsconfig.PQC {
					require.Equal(t, uint16(tls.VersionTLS13), st.Version)
				}
			case tlsconfig.FIPS1402:
				require.Equal(t, uint16(tls.VersionTLS12), st.Version)
				require.Equal(t, tls.CurveP256, st.CurveID)
				require.Contains(t, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}, st.CipherSuite)
			}
			require.Equal(t, []string{"meshca.istio-system.svc"}, st.PeerCertificates[0].DNSNames)
		})
	}
}

func TestPQCMode_RefusesClientOfferingOnlyX25519(t *testing.T) {
	e := newEnv(t, envOptions{mode: tlsconfig.PQC})
	c := e.dial(t, func(cfg *tls.Config) { cfg.CurvePreferences = []tls.CurveID{tls.X25519} })
	csr, _ := ztunnelCSR(t, spiffeID("default", "app"))
	_, err := c.CreateCertificate(context.Background(), request(t, csr, 0, nil))
	require.Equal(t, codes.Unavailable, status.Code(err), "the handshake must fail: %v", err)
	require.Contains(t, err.Error(), "handshake failure")
	require.Zero(t, e.records(t))
}

func TestDefaultMode_StillServesClassicalOnlyClients(t *testing.T) {
	e := newEnv(t, envOptions{})
	cert := e.clientCert(t, spiffeID("default", "app"))
	c := e.dial(t, func(cfg *tls.Config) {
		cfg.CurvePreferences = []tls.CurveID{tls.X25519}
		cfg.Certificates = []tls.Certificate{cert}
	})
	csr, _ := ztunnelCSR(t, spiffeID("default", "app"))
	_, err := c.CreateCertificate(context.Background(), request(t, csr, 0, nil))
	require.NoError(t, err)
	require.Equal(t, tls.X25519, c.connState().CurveID)
}

// foreignClientCert is a workload certificate from a CA meshca never saw.
func foreignClientCert(t *testing.T, id string) tls.Certificate {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "foreign"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	require.NoError(t, err)
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2), NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), URIs: []*url.URL{mustURL(t, id)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, ca, key.Public(), caKey)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestCreateCertificate_BadInputIsRefusedWithExactCodeAndWritesNothing(t *testing.T) {
	id := spiffeID("default", "app")
	type tc struct {
		clientCert func(*testing.T, *env) *tls.Certificate
		req        func(*testing.T) ([]byte, int64, map[string]any)
		code       codes.Code
		audit      string
	}
	own := func(t *testing.T, e *env) *tls.Certificate { c := e.clientCert(t, id); return &c }
	good := func(t *testing.T) ([]byte, int64, map[string]any) { c, _ := ztunnelCSR(t, id); return c, 0, nil }
	cases := map[string]tc{
		"no credentials at all": {req: good, code: codes.Unauthenticated, audit: `"reason":"authn_no_credentials"`},
		"client certificate from a foreign CA": {
			clientCert: func(t *testing.T, _ *env) *tls.Certificate { c := foreignClientCert(t, id); return &c },
			req:        good, code: codes.Unauthenticated, audit: `"reason":"authn_untrusted_certificate"`},
		"CSR carrying another ServiceAccount's SPIFFE ID": {clientCert: own, req: func(t *testing.T) ([]byte, int64, map[string]any) {
			c, _ := ztunnelCSR(t, spiffeID("kube-system", "admin"))
			return c, 0, nil
		}, code: codes.InvalidArgument, audit: `"reason":"csr_foreign_identity"`},
		"CSR with DNS SANs": {clientCert: own, req: func(t *testing.T) ([]byte, int64, map[string]any) {
			k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			return csrFor(t, k, &x509.CertificateRequest{URIs: []*url.URL{mustURL(t, id)}, DNSNames: []string{"bank.example.com"}}), 0, nil
		}, code: codes.InvalidArgument, audit: `"reason":"csr_dns_san"`},
		"CSR requesting a CA certificate": {clientCert: own, req: func(t *testing.T) ([]byte, int64, map[string]any) {
			k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			bc, _ := asn1.Marshal(struct{ IsCA bool }{true})
			return csrFor(t, k, &x509.CertificateRequest{URIs: []*url.URL{mustURL(t, id)},
				ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: bc}}}), 0, nil
		}, code: codes.InvalidArgument, audit: `"reason":"csr_requests_ca"`},
		"CSR whose signature does not match its key": {clientCert: own, req: func(t *testing.T) ([]byte, int64, map[string]any) {
			c, _ := ztunnelCSR(t, id)
			b, _ := pem.Decode(c)
			b.Bytes[len(b.Bytes)-2] ^= 0x55
			return pem.EncodeToMemory(b), 0, nil
		}, code: codes.InvalidArgument, audit: `"reason":"csr_bad_signature"`},
		"1 MiB CSR": {clientCert: own, req: func(t *testing.T) ([]byte, int64, map[string]any) {
			return []byte(strings.Repeat("M", 1<<20)), 0, nil
		}, code: codes.InvalidArgument, audit: `"reason":"csr_too_large"`},
		"validity_duration over the maximum": {clientCert: own, req: func(t *testing.T) ([]byte, int64, map[string]any) {
			c, _ := ztunnelCSR(t, id)
			return c, int64((91 * 24 * time.Hour).Seconds()), nil
		}, code: codes.InvalidArgument, audit: `"reason":"ttl_too_long"`},
		"ImpersonatedIdentity when no node agent is trusted": {clientCert: own, req: func(t *testing.T) ([]byte, int64, map[string]any) {
			other := spiffeID("prod", "payments")
			c, _ := ztunnelCSR(t, other)
			return c, 0, map[string]any{"CertSigner": "", "ImpersonatedIdentity": other}
		}, code: codes.PermissionDenied, audit: `"reason":"impersonation_disabled"`},
	}
	e := newEnv(t, envOptions{})
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			cl := e.dial(t, func(cfg *tls.Config) {
				if c.clientCert != nil {
					cfg.Certificates = []tls.Certificate{*c.clientCert(t, e)}
				}
			})
			before := e.records(t) // after the own client certificate, itself a record
			csr, ttl, meta := c.req(t)
			resp, err := cl.CreateCertificate(context.Background(), request(t, csr, ttl, meta))
			require.Nil(t, resp)
			require.Equal(t, c.code, status.Code(err), "%v", err)
			require.Equal(t, before, e.records(t), "a refused request must write nothing")
			require.Contains(t, e.auditLog(), c.audit)
		})
	}
}

func TestCreateCertificate_RateLimitGivesResourceExhaustedPerIdentity(t *testing.T) {
	e := newEnv(t, envOptions{limiter: ratelimit.New(ratelimit.Options{PerIdentityQPS: 0.001, PerIdentityBurst: 2})})
	id := spiffeID("default", "crashloop")
	cl := e.dial(t, func(cfg *tls.Config) { cfg.Certificates = []tls.Certificate{e.clientCert(t, id)} })
	for i := 0; i < 2; i++ {
		csr, _ := ztunnelCSR(t, id)
		_, err := cl.CreateCertificate(context.Background(), request(t, csr, 0, nil))
		require.NoError(t, err)
	}
	before := e.records(t)
	csr, _ := ztunnelCSR(t, id)
	_, err := cl.CreateCertificate(context.Background(), request(t, csr, 0, nil))
	require.Equal(t, codes.ResourceExhausted, status.Code(err))
	require.Equal(t, before, e.records(t))
	require.Contains(t, e.auditLog(), `"reason":"rate_limited"`)

	// Another identity is not affected.
	other := spiffeID("default", "healthy")
	cl2 := e.dial(t, func(cfg *tls.Config) { cfg.Certificates = []tls.Certificate{e.clientCert(t, other)} })
	csr, _ = ztunnelCSR(t, other)
	_, err = cl2.CreateCertificate(context.Background(), request(t, csr, 0, nil))
	require.NoError(t, err)

	require.Equal(t, 1.0, testutil.ToFloat64(metricVec(t, e, "meshca_istio_requests_total", "ResourceExhausted")))
}

// revokedSerials stands in for the durable revocation store of the CRL
// work; the authenticator's contract is only IsRevoked.
type revokedSerials map[string]bool

func (r revokedSerials) IsRevoked(_ context.Context, serial string) (bool, error) {
	return r[serial], nil
}

func TestCreateCertificate_RevokedClientCertificateIsUnauthenticated(t *testing.T) {
	revoked := revokedSerials{}
	lazy := &lazyChain{}
	e := newEnv(t, envOptions{authn: lazy})
	lazy.chain = authn.Chain{&authn.ClientCert{Trust: e.rt.Authority, Records: e.rt.Store, TrustDomain: trustDomain, Revocations: revoked}}
	id := spiffeID("default", "app")
	cert := e.clientCert(t, id)
	revoked[hex.EncodeToString(cert.Leaf.SerialNumber.Bytes())] = true
	before := e.records(t)
	cl := e.dial(t, func(cfg *tls.Config) { cfg.Certificates = []tls.Certificate{cert} })
	csr, _ := ztunnelCSR(t, id)
	_, err := cl.CreateCertificate(context.Background(), request(t, csr, 0, nil))
	require.Equal(t, codes.Unauthenticated, status.Code(err))
	require.Equal(t, before, e.records(t))
	require.Contains(t, e.auditLog(), `"reason":"authn_revoked_certificate"`)
}

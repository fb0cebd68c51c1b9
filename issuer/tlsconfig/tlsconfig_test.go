package tlsconfig_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/issuer/tlsconfig"
)

func TestParseMode(t *testing.T) {
	tests := map[string]struct {
		in      string
		want    tlsconfig.Mode
		wantErr string
	}{
		"empty means default": {in: "", want: tlsconfig.Default},
		"default":             {in: "default", want: tlsconfig.Default},
		"pqc":                 {in: "pqc", want: tlsconfig.PQC},
		"fips-140-2":          {in: "fips-140-2", want: tlsconfig.FIPS1402},
		"case matters":        {in: "PQC", wantErr: `compliance mode "PQC" is not one of [default pqc fips-140-2]`},
		"no abbreviation":     {in: "fips", wantErr: `compliance mode "fips" is not one of [default pqc fips-140-2]`},
		"no padding":          {in: " pqc", wantErr: `compliance mode " pqc" is not one of [default pqc fips-140-2]`},
		"istio's other value": {in: "fips-140-3", wantErr: `compliance mode "fips-140-3" is not one of [default pqc fips-140-2]`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := tlsconfig.ParseMode(tc.in)
			if tc.wantErr != "" {
				require.EqualError(t, err, tc.wantErr)
				require.Empty(t, got)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

var fipsSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
}

func TestServer_FieldsPerMode(t *testing.T) {
	tests := map[tlsconfig.Mode]struct {
		min, max uint16
		curves   []tls.CurveID
		suites   []uint16
		verify   bool
	}{
		tlsconfig.Default: {
			min: tls.VersionTLS12, curves: []tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256, tls.CurveP384},
		},
		"": {
			min: tls.VersionTLS12, curves: []tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256, tls.CurveP384},
		},
		tlsconfig.PQC: {
			min: tls.VersionTLS13, max: tls.VersionTLS13, curves: []tls.CurveID{tls.X25519MLKEM768}, verify: true,
		},
		tlsconfig.FIPS1402: {
			min: tls.VersionTLS12, max: tls.VersionTLS12, curves: []tls.CurveID{tls.CurveP256}, suites: fipsSuites,
		},
	}
	for mode, want := range tests {
		t.Run("mode="+string(mode), func(t *testing.T) {
			cert := selfSigned(t)
			c, err := tlsconfig.Server(mode, func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil })
			require.NoError(t, err)
			require.Equal(t, want.min, c.MinVersion)
			require.Equal(t, want.max, c.MaxVersion)
			require.Equal(t, want.curves, c.CurvePreferences)
			require.Equal(t, want.suites, c.CipherSuites)
			require.Equal(t, tls.RequestClientCert, c.ClientAuth, "client certificates are requested, never required or verified by TLS")
			require.Equal(t, []string{"h2"}, c.NextProtos)
			require.Empty(t, c.Certificates, "certificates come from GetCertificate only")
			got, err := c.GetCertificate(&tls.ClientHelloInfo{})
			require.NoError(t, err)
			require.Same(t, &cert, got, "GetCertificate is the function passed in")
			require.Equal(t, want.verify, c.VerifyConnection != nil)
		})
	}
}

func TestServer_PQCVerifyConnectionAllowsOnlyAESGCM(t *testing.T) {
	c, err := tlsconfig.Server(tlsconfig.PQC, nil)
	require.NoError(t, err)
	require.NoError(t, c.VerifyConnection(tls.ConnectionState{CipherSuite: tls.TLS_AES_128_GCM_SHA256}))
	require.NoError(t, c.VerifyConnection(tls.ConnectionState{CipherSuite: tls.TLS_AES_256_GCM_SHA384}))
	require.EqualError(t, c.VerifyConnection(tls.ConnectionState{CipherSuite: tls.TLS_CHACHA20_POLY1305_SHA256}),
		"compliance mode pqc allows only AES-GCM, not TLS_CHACHA20_POLY1305_SHA256")
}

func TestServer_UnknownModeIsAnError(t *testing.T) {
	c, err := tlsconfig.Server("tls13", nil)
	require.EqualError(t, err, `unknown compliance mode "tls13"`)
	require.Nil(t, c)
}

// selfSigned is an ECDSA P-256 serving certificate for meshca.test.
func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "meshca.test"}, DNSNames: []string{"meshca.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

type handshakeResult struct {
	server, client       tls.ConnectionState
	serverErr, clientErr error
}

// handshake runs one TLS handshake over a loopback TCP connection.
func handshake(t *testing.T, server, client *tls.Config) handshakeResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()

	type side struct {
		state tls.ConnectionState
		err   error
	}
	srv := make(chan side, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			srv <- side{err: err}
			return
		}
		defer conn.Close()
		tc := tls.Server(conn, server)
		err = tc.HandshakeContext(ctx)
		srv <- side{tc.ConnectionState(), err}
	}()

	var r handshakeResult
	conn, err := (&tls.Dialer{Config: client}).DialContext(ctx, "tcp", ln.Addr().String())
	if err == nil {
		r.client = conn.(*tls.Conn).ConnectionState()
		conn.Close()
	}
	r.clientErr = err
	s := <-srv
	r.server, r.serverErr = s.state, s.err
	return r
}

// modeServer is a server config for mode with a static P-256 certificate.
func modeServer(t *testing.T, mode tlsconfig.Mode) (*tls.Config, *x509.CertPool) {
	t.Helper()
	cert := selfSigned(t)
	c, err := tlsconfig.Server(mode, func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil })
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	return c, pool
}

// client options; a zero clientKind is a default Go client.
type clientKind struct {
	min, max uint16
	curves   []tls.CurveID
	suites   []uint16
}

func (k clientKind) config(roots *x509.CertPool) *tls.Config {
	return &tls.Config{
		RootCAs: roots, ServerName: "meshca.test", NextProtos: []string{"h2"},
		MinVersion: k.min, MaxVersion: k.max, CurvePreferences: k.curves, CipherSuites: k.suites,
	}
}

var (
	defaultClient   = clientKind{}
	x25519Only      = clientKind{curves: []tls.CurveID{tls.X25519}}
	p256Only        = clientKind{curves: []tls.CurveID{tls.CurveP256}}
	tls12Only       = clientKind{max: tls.VersionTLS12}
	tls13Only       = clientKind{min: tls.VersionTLS13}
	cbcOnlyTLS12    = clientKind{max: tls.VersionTLS12, suites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}}
	chachaOnlyTLS12 = clientKind{max: tls.VersionTLS12, suites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}}
)

func TestHandshake_NegotiatedParametersPerMode(t *testing.T) {
	tests := map[string]struct {
		mode    tlsconfig.Mode
		client  clientKind
		version uint16
		curve   tls.CurveID
		suite   uint16
	}{
		"default with a default Go client uses the hybrid PQ key exchange": {
			mode: tlsconfig.Default, client: defaultClient,
			version: tls.VersionTLS13, curve: tls.X25519MLKEM768, suite: tls.TLS_AES_128_GCM_SHA256,
		},
		"default with an X25519-only client falls back to X25519": {
			mode: tlsconfig.Default, client: x25519Only,
			version: tls.VersionTLS13, curve: tls.X25519, suite: tls.TLS_AES_128_GCM_SHA256,
		},
		"default accepts a TLS 1.2-only client": {
			mode: tlsconfig.Default, client: tls12Only,
			version: tls.VersionTLS12, curve: tls.X25519, suite: tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		},
		"pqc with a default Go client uses TLS 1.3, X25519MLKEM768 and AES-GCM": {
			mode: tlsconfig.PQC, client: defaultClient,
			version: tls.VersionTLS13, curve: tls.X25519MLKEM768, suite: tls.TLS_AES_128_GCM_SHA256,
		},
		"fips-140-2 with a default Go client uses TLS 1.2 and P-256": {
			mode: tlsconfig.FIPS1402, client: defaultClient,
			version: tls.VersionTLS12, curve: tls.CurveP256, suite: tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			srv, roots := modeServer(t, tc.mode)
			r := handshake(t, srv, tc.client.config(roots))
			require.NoError(t, r.clientErr)
			require.NoError(t, r.serverErr)
			for _, cs := range []tls.ConnectionState{r.client, r.server} {
				require.Equal(t, tls.VersionName(tc.version), tls.VersionName(cs.Version))
				require.Equal(t, tc.curve.String(), cs.CurveID.String())
				require.Equal(t, tls.CipherSuiteName(tc.suite), tls.CipherSuiteName(cs.CipherSuite))
				require.Equal(t, "h2", cs.NegotiatedProtocol)
			}
		})
	}
}

func TestHandshake_RefusedClientsPerMode(t *testing.T) {
	tests := map[string]struct {
		mode      tlsconfig.Mode
		client    clientKind
		serverErr string
	}{
		"pqc refuses a TLS 1.2-only client": {
			mode: tlsconfig.PQC, client: tls12Only, serverErr: "tls: client offered only unsupported versions",
		},
		"pqc refuses an X25519-only client": {
			mode: tlsconfig.PQC, client: x25519Only, serverErr: "tls: no key exchanges supported by both client and server",
		},
		"pqc refuses a P-256-only client": {
			mode: tlsconfig.PQC, client: p256Only, serverErr: "tls: no key exchanges supported by both client and server",
		},
		"fips-140-2 refuses a TLS 1.3-only client": {
			mode: tlsconfig.FIPS1402, client: tls13Only, serverErr: "tls: client offered only unsupported versions",
		},
		"fips-140-2 refuses an X25519-only client": {
			mode: tlsconfig.FIPS1402, client: clientKind{max: tls.VersionTLS12, curves: []tls.CurveID{tls.X25519}},
			serverErr: "tls: no cipher suite supported by both client and server",
		},
		"fips-140-2 refuses a CBC-only client": {
			mode: tlsconfig.FIPS1402, client: cbcOnlyTLS12, serverErr: "tls: no cipher suite supported by both client and server",
		},
		"fips-140-2 refuses a ChaCha20-only client": {
			mode: tlsconfig.FIPS1402, client: chachaOnlyTLS12, serverErr: "tls: no cipher suite supported by both client and server",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			srv, roots := modeServer(t, tc.mode)
			r := handshake(t, srv, tc.client.config(roots))
			require.Error(t, r.clientErr, "the client must not complete the handshake")
			require.ErrorContains(t, r.serverErr, tc.serverErr)
		})
	}
}

func TestHandshake_ClientCertificateIsRequestedButOptional(t *testing.T) {
	for _, mode := range tlsconfig.Modes {
		t.Run(string(mode), func(t *testing.T) {
			srv, roots := modeServer(t, mode)

			r := handshake(t, srv, defaultClient.config(roots))
			require.NoError(t, r.clientErr)
			require.NoError(t, r.serverErr, "a client without a certificate is accepted")
			require.Empty(t, r.server.PeerCertificates)

			// An untrusted certificate passes TLS; the authenticator judges it.
			untrusted := selfSigned(t)
			cfg := defaultClient.config(roots)
			cfg.Certificates = []tls.Certificate{untrusted}
			r = handshake(t, srv, cfg)
			require.NoError(t, r.clientErr)
			require.NoError(t, r.serverErr)
			require.Len(t, r.server.PeerCertificates, 1)
			require.True(t, untrusted.Leaf.Equal(r.server.PeerCertificates[0]))
			require.Empty(t, r.server.VerifiedChains, "TLS does not verify client certificates")
		})
	}
}

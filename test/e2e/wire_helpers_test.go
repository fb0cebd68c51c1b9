package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/meshca/meshca/test/grpcraw"
)

// createCertificate is the full method name of Istio's CA RPC.
const createCertificate = "/istio.v1.auth.IstioCertificateService/CreateCertificate"

// servingName is a DNS name of meshca's default serving certificate.
const servingName = "localhost"

// wireCA is an initialised CA directory plus its intermediate (exported with
// meshca cacerts), so that a test can make client certificates that chain to
// the mesh root but that the running service never issued.
type wireCA struct {
	dir      string
	roots    *x509.CertPool
	inter    *x509.Certificate
	interKey crypto.Signer
}

func newWireCA(t *testing.T) *wireCA {
	t.Helper()
	dir := initCA(t)
	out := filepath.Join(t.TempDir(), "cacerts")
	meshca(t, "cacerts", "--dir", dir, "--out", out)
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(out, name))
		require.NoError(t, err)
		return b
	}
	w := &wireCA{dir: dir, roots: x509.NewCertPool()}
	require.True(t, w.roots.AppendCertsFromPEM(read("root-cert.pem")))
	w.inter = splitPEM(t, string(read("ca-cert.pem")))[0]
	b, _ := pem.Decode(read("ca-key.pem"))
	require.NotNil(t, b)
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	require.NoError(t, err)
	w.interKey = k.(crypto.Signer)
	return w
}

// clientCert signs an unrecorded client certificate with the intermediate.
func (w *wireCA) clientCert(t *testing.T, uris []string, notBefore, notAfter time.Time) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: serial, NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	for _, s := range uris {
		u, err := url.Parse(s)
		require.NoError(t, err)
		tmpl.URIs = append(tmpl.URIs, u)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, w.inter, key.Public(), w.interKey)
	require.NoError(t, err)
	return &tls.Certificate{Certificate: [][]byte{der, w.inter.Raw}, PrivateKey: key}
}

// dial connects to meshca's gRPC port like istio-agent: TLS with SNI
// verified against the mesh root, and cert as the client certificate.
func (w *wireCA) dial(t *testing.T, addr string, cert *tls.Certificate) *grpc.ClientConn {
	t.Helper()
	cfg := &tls.Config{RootCAs: w.roots, ServerName: servingName, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn
}

// invokeRaw sends msg as the CreateCertificate request body.
func invokeRaw(ctx context.Context, conn *grpc.ClientConn, msg []byte) error {
	var out []byte
	return conn.Invoke(ctx, createCertificate, &msg, &out, grpc.ForceCodecV2(grpcraw.Codec{}))
}

// rawH2Call sends one gRPC request over a hand-made HTTP/2 connection, so
// that header values a gRPC client refuses to send (such as bytes that are
// not UTF-8, which HTTP/2 carries) reach the server. It returns the
// grpc-status the server answered, or an error when the connection broke.
func rawH2Call(addr string, roots *x509.CertPool, path string, headers [][2]string, msg []byte) (int, error) {
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: servingName, NextProtos: []string{"h2"}})
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		return 0, fmt.Errorf("ALPN negotiated %q, not h2", p)
	}
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return 0, err
	}
	bw := bufio.NewWriter(conn)
	fr := http2.NewFramer(bw, conn)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, h := range append([][2]string{
		{":method", "POST"}, {":scheme", "https"}, {":path", path}, {":authority", servingName},
		{"content-type", "application/grpc"}, {"te", "trailers"},
	}, headers...) {
		if err := enc.WriteField(hpack.HeaderField{Name: h[0], Value: h[1]}); err != nil {
			return 0, err
		}
	}
	// gRPC message framing: compressed flag, 4-byte big-endian length, message.
	body := make([]byte, 5, 5+len(msg))
	body[1], body[2], body[3], body[4] = byte(len(msg)>>24), byte(len(msg)>>16), byte(len(msg)>>8), byte(len(msg))
	if _, err := bw.WriteString(http2.ClientPreface); err != nil {
		return 0, err
	}
	for _, write := range []func() error{
		func() error { return fr.WriteSettings() },
		func() error {
			return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndHeaders: true})
		},
		func() error { return fr.WriteData(1, true, append(body, msg...)) },
		bw.Flush,
	} {
		if err := write(); err != nil {
			return 0, err
		}
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return 0, fmt.Errorf("reading the answer to the raw HTTP/2 request: %w", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				if err := fr.WriteSettingsAck(); err != nil {
					return 0, err
				}
				if err := bw.Flush(); err != nil {
					return 0, err
				}
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID != 1 {
				continue
			}
			if v := f.PseudoValue("status"); v != "" && v != "200" {
				return 0, fmt.Errorf("HTTP status %s", v)
			}
			if s := headerValue(f, "grpc-status"); s != "" {
				return strconv.Atoi(s)
			}
		case *http2.RSTStreamFrame:
			return 0, fmt.Errorf("stream reset by the server: %v", f.ErrCode)
		case *http2.GoAwayFrame:
			return 0, fmt.Errorf("connection closed by the server: %v %s", f.ErrCode, f.DebugData())
		}
	}
}

func headerValue(f *http2.MetaHeadersFrame, name string) string {
	for _, h := range f.RegularFields() {
		if h.Name == name {
			return h.Value
		}
	}
	return ""
}

// requireServing asserts that the process still runs and serves: /readyz
// answers 200 and the gRPC health service on the signing port SERVING.
func (s *server) requireServing(t *testing.T, w *wireCA) {
	t.Helper()
	select {
	case <-s.exited:
		t.Fatalf("meshca serve exited:\n%s", s.logs())
	default:
	}
	code, _ := get(t, "http://"+s.ops+"/readyz")
	require.Equal(t, 200, code, s.logs())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(w.dial(t, s.grpc, nil)).Check(ctx, &healthpb.HealthCheckRequest{})
	require.NoError(t, err, s.logs())
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.GetStatus())
}

// metrics returns the samples of the metrics endpoint, keyed by the sample
// name with its labels as exposed.
func (s *server) metrics(t *testing.T) map[string]float64 {
	t.Helper()
	code, body := get(t, "http://"+s.ops+"/metrics")
	require.Equal(t, 200, code)
	out := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		require.Positive(t, i, line)
		v, err := strconv.ParseFloat(line[i+1:], 64)
		require.NoError(t, err, line)
		out[line[:i]] = v
	}
	return out
}

// waitMetrics polls the metrics endpoint until every sample in want has its
// value (a counter bumped after the effect a test waited for), failing with
// the last values seen after within. It returns the samples that matched.
func (s *server) waitMetrics(t *testing.T, within time.Duration, want map[string]float64) map[string]float64 {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		m := s.metrics(t)
		got := make(map[string]float64, len(want))
		for k := range want {
			got[k] = m[k]
		}
		if maps.Equal(got, want) {
			return m
		}
		if time.Now().After(deadline) {
			require.Equal(t, want, got, "metrics not within %s", within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sum adds the samples of one metric family.
func sum(samples map[string]float64, name string) float64 {
	total := 0.0
	for k, v := range samples {
		if k == name || strings.HasPrefix(k, name+"{") {
			total += v
		}
	}
	return total
}

// labelValues lists the distinct values of label in the samples of name.
func labelValues(samples map[string]float64, name, label string) []string {
	seen := map[string]bool{}
	for k := range samples {
		if !strings.HasPrefix(k, name+"{") {
			continue
		}
		_, rest, ok := strings.Cut(k, label+`="`)
		if !ok {
			continue
		}
		v, _, _ := strings.Cut(rest, `"`)
		seen[v] = true
	}
	var out []string
	for v := range seen {
		out = append(out, v)
	}
	return out
}

// workloadRecords counts the issuance records of workload certificates
// (not meshca's own serving certificates) with the CLI.
func workloadRecords(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	dec := json.NewDecoder(strings.NewReader(meshca(t, "records", "list", "--dir", dir, "--json")))
	for dec.More() {
		var r struct {
			Profile string `json:"profile"`
		}
		require.NoError(t, dec.Decode(&r))
		if r.Profile != "serving" {
			n++
		}
	}
	return n
}

func rssBytes(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			require.NoError(t, err)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/PID/status")
	return 0
}

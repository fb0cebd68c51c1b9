package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"
	pb "istio.io/api/security/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/meshca/meshca/crl"
	"github.com/meshca/meshca/test/kubeenv"
)

// published follows what the apiserver holds: the istio-ca-root-cert
// ConfigMap of a namespace (the roots a workload trusts) and every version
// of the cacerts Secret.
type published struct {
	mu      sync.Mutex
	roots   string
	secrets []map[string][]byte
}

func (p *published) rootsPEM() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.roots
}

func (p *published) secret() map[string][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.secrets) == 0 {
		return nil
	}
	return p.secrets[len(p.secrets)-1]
}

func (p *published) allSecrets() []map[string][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]map[string][]byte(nil), p.secrets...)
}

func follow(t *testing.T, env *kubeenv.Env, ns string) *published {
	t.Helper()
	p := &published{}
	cms, err := env.Client.CoreV1().ConfigMaps(ns).Watch(t.Context(), metav1.ListOptions{FieldSelector: "metadata.name=istio-ca-root-cert"})
	require.NoError(t, err)
	t.Cleanup(cms.Stop)
	secrets, err := env.Client.CoreV1().Secrets("istio-system").Watch(t.Context(), metav1.ListOptions{FieldSelector: "metadata.name=cacerts"})
	require.NoError(t, err)
	t.Cleanup(secrets.Stop)
	go func() {
		for ev := range cms.ResultChan() {
			if cm, ok := ev.Object.(*corev1.ConfigMap); ok && (ev.Type == watch.Added || ev.Type == watch.Modified) {
				p.mu.Lock()
				p.roots = cm.Data["root-cert.pem"]
				p.mu.Unlock()
			}
		}
	}()
	go func() {
		for ev := range secrets.ResultChan() {
			if s, ok := ev.Object.(*corev1.Secret); ok && (ev.Type == watch.Added || ev.Type == watch.Modified) {
				p.mu.Lock()
				p.secrets = append(p.secrets, s.Data)
				p.mu.Unlock()
			}
		}
	}()
	return p
}

func certsOf(t *testing.T, s string) []*x509.Certificate {
	t.Helper()
	if strings.TrimSpace(s) == "" {
		return nil
	}
	return splitPEM(t, s)
}

// issued is one certificate the endpoint returned, with the roots the
// apiserver published when it was requested.
type issued struct {
	chain []string
	roots string
	// sent and at are when the call was made and answered.
	sent, at time.Time
}

// loadWorker calls the Istio endpoint back to back as one workload,
// authenticating with a ServiceAccount token as istio-agent does, on a new
// TLS connection every connEvery calls (a handshake verifies the serving
// certificate against the roots published then). Every call's outcome is
// recorded.
type loadWorker struct {
	addr, token, id string
	connEvery       int
	pub             *published
	// calls stops run after that many calls; 0 runs until ctx ends.
	calls int

	ok     []issued
	failed []string
}

func (w *loadWorker) run(ctx context.Context, t *testing.T) {
	var conn *grpc.ClientConn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	meta, _ := structpb.NewStruct(map[string]any{"CertSigner": ""})
	for i := 0; ctx.Err() == nil && (w.calls == 0 || i < w.calls); i++ {
		roots := w.pub.rootsPEM()
		if conn == nil || i%w.connEvery == 0 {
			if conn != nil {
				conn.Close()
			}
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM([]byte(roots))
			var err error
			conn, err = grpc.NewClient(w.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "meshca.istio-system.svc"})))
			if err != nil {
				w.failed = append(w.failed, fmt.Sprintf("dial: %v", err))
				continue
			}
		}
		csr := workloadCSR(t, w.id)
		sent := time.Now()
		cctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+w.token, "clusterid", "Kubernetes"), 10*time.Second)
		resp, err := pb.NewIstioCertificateServiceClient(conn).CreateCertificate(cctx, &pb.IstioCertificateRequest{Csr: csr, ValidityDuration: 600, Metadata: meta})
		cancel()
		if err != nil {
			w.failed = append(w.failed, fmt.Sprintf("call %d at %s: %v", i, time.Now().Format(time.RFC3339Nano), err))
			continue
		}
		w.ok = append(w.ok, issued{chain: resp.CertChain, roots: roots, sent: sent, at: time.Now()})
	}
}

func workloadCSR(t *testing.T, id string) string {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Error(err)
		return ""
	}
	u, _ := url.Parse(id)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
	if err != nil {
		t.Error(err)
		return ""
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// TestServe_IntermediateRotationUnderLoad is the rotation under load
// against the real apiserver: the built binary, as an operator runs it
// with trustBundle.enabled and the cacerts Secret, with an intermediate
// lifetime and thresholds that make it prepare and activate a new
// intermediate within seconds, while workloads call the Istio endpoint
// continuously. No call fails; every issued leaf verifies against the
// roots published (istio-ca-root-cert read from the apiserver) when it was
// requested; after the activation the endpoint returns the new
// intermediate, and the cacerts Secret holds it with its key, its
// cert-chain.pem and a ca-crl.pem with a CRL from every certificate of
// that chain, in every version the apiserver held; new connections get a
// serving certificate of the new intermediate, and a workload certificate
// of the old one still authenticates (mTLS alone) and renews.
func TestServe_IntermediateRotationUnderLoad(t *testing.T) {
	env, kubeconfig := meshcaInCluster(t, "shop")
	ctx := t.Context()
	pub := follow(t, env, "shop")

	dir := initCA(t)
	// meshca init minted a one-year intermediate; with a fresh store serve
	// mints the first one under the configuration below.
	require.NoError(t, os.Remove(filepath.Join(dir, "meshca.db")))
	cfgPath := filepath.Join(dir, "meshca.yaml")
	b, err := os.ReadFile(cfgPath)
	require.NoError(t, err)
	// A one-hour intermediate (the shortest allowed). Its notBefore is
	// backdated 2 minutes, so its validity is 62 minutes from 2 minutes
	// before it is minted: it prepares its successor after 3.7% of that
	// (about 17 s after it was minted) and activates it after 4.1% (about
	// 32 s). Thresholds inside the backdating would rotate on every
	// evaluation.
	b = bytes.Replace(b, []byte("intermediate:\n"), []byte("intermediate:\n  lifetime: 1h\n  prepareThreshold: 0.037\n  activateThreshold: 0.041\n  gracePeriod: 1m\n"), 1)
	b = append(b, []byte("kubernetes:\n  kubeconfig: "+kubeconfig+"\n"+
		"trustBundle:\n  enabled: true\n  publishCACerts: true\n"+
		"server:\n  rateLimit:\n    perIdentityQPS: 100000\n    perIdentityBurst: 100000\n"+
		// The load workers share 127.0.0.1 and reconnect every few calls,
		// far faster than pods with their own addresses would.
		"  limits:\n    maxNewConnectionsPerSecondPerAddress: 100000\n    maxNewConnectionBurstPerAddress: 100000\n")...)
	require.NoError(t, os.WriteFile(cfgPath, b, 0o644))

	s := startServe(t, dir)
	s.waitReady(t, 10*time.Second)
	require.Eventually(t, func() bool { return pub.rootsPEM() != "" && pub.secret() != nil }, 20*time.Second, 20*time.Millisecond,
		"roots and cacerts not published:\n%s", s.logs())
	firstInter := string(pub.secret()["ca-cert.pem"])
	rootsAtStart := pub.rootsPEM()

	const workers = 4
	ws := make([]*loadWorker, workers)
	for i := range ws {
		sa := fmt.Sprintf("load-%d", i)
		token, err := env.MintToken(ctx, "shop", sa, []string{"istio-ca"}, time.Hour)
		require.NoError(t, err)
		ws[i] = &loadWorker{addr: s.grpc, token: token, id: "spiffe://cluster.local/ns/shop/sa/" + sa, connEvery: 25, pub: pub}
	}
	// Each workload's first call reviews its token; the reviews of one
	// caller address are bounded (the workloads here share 127.0.0.1,
	// pods would not), so they are made one after the other. The review
	// is cached for longer than the test runs.
	for _, w := range ws {
		w.calls = 1
		w.run(ctx, t)
		w.calls = 0
	}
	// A workload certificate of the first intermediate, with its key: after
	// the rotation it still authenticates its holder (grace).
	mtlsID := "spiffe://cluster.local/ns/shop/sa/mtls"
	mtlsToken, err := env.MintToken(ctx, "shop", "mtls", []string{"istio-ca"}, time.Hour)
	require.NoError(t, err)
	oldChain, oldKey := tokenCall(t, s.grpc, rootsAtStart, mtlsToken, mtlsID)
	require.Equal(t, firstInter, oldChain[1])

	loadCtx, stopLoad := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Go(func() { w.run(loadCtx, t) })
	}
	// Load runs until the cacerts Secret holds a new intermediate, and for
	// a few seconds after, then stops.
	rotated := func() bool {
		sec := pub.secret()
		return sec != nil && string(sec["ca-cert.pem"]) != firstInter
	}
	deadline := time.Now().Add(3 * time.Minute)
	for !rotated() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	// The endpoint switches before cacerts is written: every call made
	// from now on gets the new intermediate. It is read now: with these
	// thresholds the new intermediate prepares its own successor 17 s
	// after it was minted and activates it 15 s later, which the checks
	// below (tens of thousands of chains verified) can outlast.
	seenRotated := time.Now()
	newInter := string(pub.secret()["ca-cert.pem"])
	time.Sleep(3 * time.Second)
	stopLoad()
	wg.Wait()
	require.True(t, rotated(), "no activation reached the cacerts Secret within 3 minutes:\n%s", s.logs())

	// What reads the live state first: the next rotation (see newInter)
	// may come while every call is verified below.
	sec := pub.secret()
	chain := certsOf(t, string(sec["cert-chain.pem"]))
	require.Equal(t, newInter, string(pemOf(chain[0])))
	// The first intermediate's workload certificate renews over mTLS alone.
	renewed := callIstioCA(t, s.grpc, "meshca.istio-system.svc", []byte(pub.rootsPEM()), []byte(oldChain[0]+oldChain[1]), oldKey, mtlsID)
	require.Equal(t, newInter, renewed[1])

	// A new connection gets a serving certificate of the new intermediate.
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM([]byte(pub.rootsPEM())))
	conn, err := tls.Dial("tcp", s.grpc, &tls.Config{RootCAs: roots, ServerName: "meshca.istio-system.svc", NextProtos: []string{"h2"}})
	require.NoError(t, err)
	defer conn.Close()
	served := conn.ConnectionState().PeerCertificates
	require.GreaterOrEqual(t, len(served), 2)
	require.Equal(t, newInter, string(pemOf(served[1])), "the serving certificate moved to the new intermediate")

	var failed []string
	var total int
	inters := map[string]time.Time{} // intermediate PEM -> last issued at
	for _, w := range ws {
		failed = append(failed, w.failed...)
		total += len(w.ok)
		for _, is := range w.ok {
			require.Len(t, is.chain, 3, "leaf, intermediate, roots")
			require.Equal(t, is.roots, is.chain[2], "the chain's roots are those published when it was requested")
			leaf, inter := certsOf(t, is.chain[0]), certsOf(t, is.chain[1])
			require.Len(t, leaf, 1)
			require.Len(t, inter, 1)
			roots, ip := x509.NewCertPool(), x509.NewCertPool()
			require.True(t, roots.AppendCertsFromPEM([]byte(is.roots)))
			ip.AddCert(inter[0])
			_, err := leaf[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: ip, CurrentTime: is.at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
			require.NoError(t, err, "a leaf issued at %s does not verify against the roots published then", is.at)
			if is.at.After(inters[is.chain[1]]) {
				inters[is.chain[1]] = is.at
			}
		}
	}
	t.Logf("%d calls, %d intermediates seen", total, len(inters))
	require.Empty(t, failed, "failed calls during the rotation:\n%s", s.logs())
	require.Greater(t, total, 100)
	require.Equal(t, rootsAtStart, pub.rootsPEM(), "an intermediate rotation leaves root-cert.pem byte for byte")

	// After the activation the endpoint returns the new intermediate, and
	// cacerts holds it.
	require.Contains(t, inters, newInter, "the endpoint never returned the intermediate that cacerts holds")
	require.Contains(t, inters, firstInter)
	var after int
	for _, w := range ws {
		for _, is := range w.ok {
			if is.sent.After(seenRotated) {
				after++
				require.Equal(t, newInter, is.chain[1], "a call made after cacerts held the new intermediate got another one")
			}
		}
	}
	require.Greater(t, after, 10)
	for i, v := range pub.allSecrets() {
		missing, err := crl.MissingCRLs(certsOf(t, string(v["cert-chain.pem"])), v["ca-crl.pem"])
		require.NoError(t, err)
		require.Empty(t, missing, "cacerts version %d: ca-crl.pem lacks a CRL from a certificate of cert-chain.pem", i)
		key, _ := pem.Decode(v["ca-key.pem"])
		require.NotNil(t, key, "cacerts version %d: ca-key.pem", i)
		inter := certsOf(t, string(v["ca-cert.pem"]))
		require.Len(t, inter, 1)
		tlsCert, err := tls.X509KeyPair(v["ca-cert.pem"], v["ca-key.pem"])
		require.NoError(t, err, "cacerts version %d: ca-key.pem is ca-cert.pem's key", i)
		require.Equal(t, inter[0].Raw, tlsCert.Certificate[0])
		require.Equal(t, rootsAtStart, string(v["root-cert.pem"]), "cacerts version %d", i)
	}

}

func pemOf(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// tokenCall requests a certificate for id with a ServiceAccount token, as
// istio-agent's first request does, and returns the chain and the new
// certificate's PEM key.
func tokenCall(t *testing.T, addr, rootsPEM, token, id string) ([]string, []byte) {
	t.Helper()
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM([]byte(rootsPEM)))
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: "meshca.istio-system.svc"})))
	require.NoError(t, err)
	defer conn.Close()
	csrPath, key := writeCSRWithKey(t, t.TempDir(), id)
	csr, err := os.ReadFile(csrPath)
	require.NoError(t, err)
	meta, _ := structpb.NewStruct(map[string]any{"CertSigner": ""})
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token, "clusterid", "Kubernetes"), 10*time.Second)
	defer cancel()
	resp, err := pb.NewIstioCertificateServiceClient(conn).CreateCertificate(ctx, &pb.IstioCertificateRequest{Csr: string(csr), ValidityDuration: 3600, Metadata: meta})
	require.NoError(t, err)
	return resp.CertChain, key
}

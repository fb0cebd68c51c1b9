package csrsigner_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	authnv1 "k8s.io/api/authentication/v1"
	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/caerr"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/identity"
	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/issuer/csrsigner"
	"github.com/meshca/meshca/issuer/kubesigner"
	"github.com/meshca/meshca/rotation/intermediate"
	"github.com/meshca/meshca/test/kubeenv"
)

var kube *kubeenv.Env

func TestMain(m *testing.M) { os.Exit(kubeenv.RunMain(m, &kube)) }

const trustDomain = "cluster.local"

// istiodUsages are what istiod's RA asks for, for every key type
// (security/pkg/pki/ra/k8s_ra.go).
var istiodUsages = []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageKeyEncipherment, certv1.UsageServerAuth, certv1.UsageClientAuth}

var signerSeq atomic.Int64

// harness is a real CA (file root, softkms, bbolt) and the CSR signer on
// its own kubesigner manager against the package's apiserver, with a signer
// name of its own, so that tests running in parallel never see each
// other's requests.
type harness struct {
	signer  string
	extra   []string // more signer names of the same signer
	admin   string   // the username of kube.Client, as spec.username shows it
	engine  *gate
	rootPEM []byte
	roots   *x509.CertPool
	reg     *prometheus.Registry
	cancel  context.CancelFunc
	done    chan error
	opts    csrsigner.Options
	config  *rest.Config
}

type harnessOptions struct {
	extraSigners int      // signer names beyond h.signer (h.extra)
	allowed      []string // default: the admin user
	maxDuration  time.Duration
	closed       bool         // the engine starts unready
	config       *rest.Config // the signer's credentials (default: the admin's)
}

// gate is the engine behind a switch: closed, it answers as a CA that is
// not ready yet (caerr.Unavailable, what authority.Sign returns without
// signing material); it counts the calls that reached the real engine.
type gate struct {
	e      kubesigner.Engine
	closed atomic.Bool
	mu     sync.Mutex
	calls  map[string]int // by identity
}

func (g *gate) Sign(ctx context.Context, req authority.Request) (*authority.Result, error) {
	if g.closed.Load() {
		return nil, caerr.New(caerr.Unavailable, "ca_not_ready", "the CA has no signing material yet")
	}
	g.mu.Lock()
	g.calls[req.Identity.String()]++
	g.mu.Unlock()
	return g.e.Sign(ctx, req)
}

func (g *gate) signed(id string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls[id]
}

func newHarness(t *testing.T, o harnessOptions) *harness {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Defaults(dir)
	km, err := keys.Open(context.Background(), keys.Config{Type: "softkms", Dir: dir})
	require.NoError(t, err)
	signer, p, err := km.Create("root-tmp", keys.ECP256)
	require.NoError(t, err)
	require.NoError(t, os.Rename(p, filepath.Join(dir, config.RootKeyFile)))
	rc, err := root.NewSelfSignedRoot(signer, "test root", "meshca-test", 24*time.Hour*365, time.Now())
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(cfg.Root.File.RootCert, root.EncodePEM(rc), 0o644))
	rt, _, err := intermediate.Open(context.Background(), cfg, nil, slog.New(slog.DiscardHandler), nil)
	require.NoError(t, err)
	t.Cleanup(func() { rt.Close() })

	h := &harness{
		signer:  fmt.Sprintf("test%d.meshca.io/workload", signerSeq.Add(1)),
		admin:   adminUser(t),
		engine:  &gate{e: rt.Authority, calls: map[string]int{}},
		rootPEM: root.EncodePEM(rc),
		roots:   x509.NewCertPool(),
	}
	h.roots.AddCert(rc)
	for range o.extraSigners {
		h.extra = append(h.extra, fmt.Sprintf("test%d.meshca.io/workload", signerSeq.Add(1)))
	}
	h.engine.closed.Store(o.closed)
	if o.allowed == nil {
		o.allowed = []string{h.admin}
	}
	td, err := identity.TrustDomain(trustDomain)
	require.NoError(t, err)
	h.opts = csrsigner.Options{
		Engine: h.engine, TrustDomain: td, SignerNames: append([]string{h.signer}, h.extra...),
		AllowedRequesters: o.allowed, MaxDuration: o.maxDuration, Profile: cfg.Issuance.Profile,
	}
	h.config = o.config
	if h.config == nil {
		h.config = kube.Config
	}
	h.start(t)
	return h
}

// start runs the signer on a fresh manager (a restart: a new cache that
// replays every request).
func (h *harness) start(t *testing.T) {
	t.Helper()
	s, err := csrsigner.New(h.opts)
	require.NoError(t, err)
	h.reg = prometheus.NewRegistry()
	mgr, err := kubesigner.NewManager(h.config, kubesigner.ManagerOptions{Metrics: kubesigner.NewMetrics(h.reg)}, s)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- mgr.Start(ctx) }()
	t.Cleanup(h.stop)
	require.Eventually(t, func() bool { return mgr.GetCache().WaitForCacheSync(ctx) }, 10*time.Second, 10*time.Millisecond)
}

func (h *harness) stop() {
	if h.cancel != nil {
		h.cancel()
		<-h.done
		h.cancel = nil
	}
}

func adminUser(t *testing.T) string {
	t.Helper()
	r, err := kube.Client.AuthenticationV1().SelfSubjectReviews().Create(t.Context(), &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	require.NoError(t, err)
	return r.Status.UserInfo.Username
}

// outcomes is meshca_controller_reconcile_total{controller="csr",outcome}.
func (h *harness) outcomes(t *testing.T, outcome string) float64 {
	t.Helper()
	n, err := kubesigner.Reconciles(h.reg, csrsigner.Name, kubesigner.Outcome(outcome))
	require.NoError(t, err)
	return n
}

func spiffeID(ns, sa string) string { return "spiffe://" + trustDomain + "/ns/" + ns + "/sa/" + sa }

func ecKey(t *testing.T) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return k
}

func rsaKey(t *testing.T) crypto.Signer {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	return k
}

// csrPEM is a CSR like istio-agent's: one URI SAN, the SPIFFE ID.
func csrPEM(t *testing.T, k crypto.Signer, id string) []byte {
	t.Helper()
	u, err := url.Parse(id)
	require.NoError(t, err)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, k)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

type csrOptions struct {
	signer     string // default h.signer
	key        crypto.Signer
	usages     []certv1.KeyUsage
	expiration int32 // 0: 3600, as istiod asks for a 1 h TTL
	unapproved bool
}

// create makes a CertificateSigningRequest the way istiod does (generateName
// csr-workload-, the four usages, expirationSeconds) and approves it, as
// istiod does, unless o.unapproved.
func (h *harness) create(t *testing.T, id string, o csrOptions) *certv1.CertificateSigningRequest {
	t.Helper()
	if o.key == nil {
		o.key = ecKey(t)
	}
	if o.usages == nil {
		o.usages = istiodUsages
	}
	if o.expiration == 0 {
		o.expiration = 3600
	}
	if o.signer == "" {
		o.signer = h.signer
	}
	csr, err := kube.Client.CertificatesV1().CertificateSigningRequests().Create(t.Context(), &certv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "csr-workload-"},
		Spec: certv1.CertificateSigningRequestSpec{
			Request: csrPEM(t, o.key, id), SignerName: o.signer, Usages: o.usages, ExpirationSeconds: &o.expiration,
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = kube.Client.CertificatesV1().CertificateSigningRequests().Delete(context.Background(), csr.Name, metav1.DeleteOptions{})
	})
	if !o.unapproved {
		csr = decide(t, csr, certv1.CertificateApproved)
	}
	return csr
}

// decide approves or denies csr through the /approval subresource.
func decide(t *testing.T, csr *certv1.CertificateSigningRequest, c certv1.RequestConditionType) *certv1.CertificateSigningRequest {
	t.Helper()
	csr = csr.DeepCopy()
	csr.Status.Conditions = append(csr.Status.Conditions, certv1.CertificateSigningRequestCondition{
		Type: c, Status: corev1.ConditionTrue, Reason: "Test", Message: "by the test",
	})
	out, err := kube.Client.CertificatesV1().CertificateSigningRequests().UpdateApproval(t.Context(), csr.Name, csr, metav1.UpdateOptions{})
	require.NoError(t, err)
	return out
}

func get(t *testing.T, name string) *certv1.CertificateSigningRequest {
	t.Helper()
	csr, err := kube.Client.CertificatesV1().CertificateSigningRequests().Get(t.Context(), name, metav1.GetOptions{})
	require.NoError(t, err)
	return csr
}

// waitIssued polls until csr has a certificate and returns it.
func waitIssued(t *testing.T, name string, within time.Duration) *certv1.CertificateSigningRequest {
	t.Helper()
	var csr *certv1.CertificateSigningRequest
	require.Eventually(t, func() bool {
		csr = get(t, name)
		return len(csr.Status.Certificate) > 0 || failedCondition(csr) != nil
	}, within, 20*time.Millisecond, "no certificate for %s", name)
	require.Nil(t, failedCondition(csr), "%s failed", name)
	return csr
}

// waitFailed polls until csr has a Failed condition and returns it.
func waitFailed(t *testing.T, name string) *certv1.CertificateSigningRequestCondition {
	t.Helper()
	var c *certv1.CertificateSigningRequestCondition
	require.Eventually(t, func() bool {
		csr := get(t, name)
		require.Zero(t, len(csr.Status.Certificate), "%s was signed", name)
		c = failedCondition(csr)
		return c != nil
	}, 10*time.Second, 20*time.Millisecond, "no Failed condition on %s", name)
	return c
}

func failedCondition(csr *certv1.CertificateSigningRequest) *certv1.CertificateSigningRequestCondition {
	for i, c := range csr.Status.Conditions {
		if c.Type == certv1.CertificateFailed {
			return &csr.Status.Conditions[i]
		}
	}
	return nil
}

// barrier creates, approves and waits for an allowed request: once it is
// signed, the signer has processed every event queued before it.
func (h *harness) barrier(t *testing.T) {
	t.Helper()
	waitIssued(t, h.create(t, spiffeID("barrier", "sa"), csrOptions{}).Name, 10*time.Second)
}

// chain parses status.certificate: leaf first, then intermediates.
func chain(t *testing.T, csr *certv1.CertificateSigningRequest) []*x509.Certificate {
	t.Helper()
	var certs []*x509.Certificate
	rest := csr.Status.Certificate
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		require.Equal(t, "CERTIFICATE", b.Type)
		require.Empty(t, b.Headers)
		c, err := x509.ParseCertificate(b.Bytes)
		require.NoError(t, err)
		certs = append(certs, c)
	}
	require.Empty(t, strings.TrimSpace(string(rest)))
	require.GreaterOrEqual(t, len(certs), 2, "leaf and intermediate")
	return certs
}

// verify checks the chain up to the mesh root, as istiod's RA does
// (security/pkg/pki/util VerifyCertificate: the rest of the chain as
// intermediates, the root from caCertFile).
func (h *harness) verify(t *testing.T, certs []*x509.Certificate) {
	t.Helper()
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		require.NotEqual(t, c.RawSubject, c.RawIssuer, "status.certificate holds leaf and intermediates only, no root")
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{Roots: h.roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	require.NoError(t, err)
}

// events lists the Events meshca wrote about csr (events.k8s.io/v1, namespace default).
func events(t *testing.T, csr *certv1.CertificateSigningRequest) []eventsv1.Event {
	t.Helper()
	l, err := kube.Client.EventsV1().Events(metav1.NamespaceDefault).List(t.Context(), metav1.ListOptions{})
	require.NoError(t, err)
	var out []eventsv1.Event
	for _, e := range l.Items {
		if e.Regarding.Kind == "CertificateSigningRequest" && e.Regarding.Name == csr.Name && e.Regarding.UID == csr.UID {
			out = append(out, e)
		}
	}
	return out
}

func waitEvent(t *testing.T, csr *certv1.CertificateSigningRequest, reason string) eventsv1.Event {
	t.Helper()
	var ev eventsv1.Event
	require.Eventually(t, func() bool {
		for _, e := range events(t, csr) {
			if e.Reason == reason && e.ReportingController == csrsigner.EventSource {
				ev = e
				return true
			}
		}
		return false
	}, 10*time.Second, 50*time.Millisecond, "no %s Event on %s", reason, csr.Name)
	return ev
}

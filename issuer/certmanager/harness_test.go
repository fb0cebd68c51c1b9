package certmanager_test

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
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/cert-manager/cert-manager/pkg/util/pki"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/caerr"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/profile"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/issuer/certmanager"
	"github.com/meshca/meshca/issuer/certmanager/api/v1alpha1"
	"github.com/meshca/meshca/issuer/kubesigner"
	"github.com/meshca/meshca/rotation/intermediate"
	"github.com/meshca/meshca/test/kubeenv"
)

const trustDomain = "cluster.local"

var (
	env *kubeenv.Env
	// h is one manager running both controllers for the whole package
	// (controller-runtime allows one controller of a name per process);
	// tests are isolated by namespace and run one at a time.
	h *harness
)

// stamp is the controllers' clock: every condition transition and
// failureTime they write carries it (the engine signs on the real clock).
var stamp = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// healthCheckInterval is short so that the tests see re-checks.
const healthCheckInterval = 200 * time.Millisecond

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	e, err := kubeenv.Start(kubeenv.WithScheme(cmapi.AddToScheme), kubeenv.WithScheme(v1alpha1.AddToScheme))
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: %v\n", err)
		return 1
	}
	defer e.Stop()
	env = e
	dir, err := os.MkdirTemp("", "meshca-certmanager-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stop func() error
	if h, stop, err = startHarness(ctx, dir); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: %v\n", err)
		return 1
	}
	code := m.Run()
	cancel()
	if err := stop(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: manager: %v\n", err)
		return 1
	}
	return code
}

// ca is a real CA (file root, softkms, bbolt) opened as meshca serve opens it.
type ca struct {
	rt    *authority.Runtime
	roots *x509.CertPool
	root  *x509.Certificate
	// maxTTL is issuance.maxCertTTL.
	maxTTL time.Duration
}

func newCA(ctx context.Context, dir string) (*ca, error) {
	cfg := config.Defaults(dir)
	cfg.Issuance.MaxCertTTL.Duration = 48 * time.Hour
	km, err := keys.Open(ctx, keys.Config{Type: "softkms", Dir: dir})
	if err != nil {
		return nil, err
	}
	signer, p, err := km.Create("root-tmp", keys.ECP256)
	if err != nil {
		return nil, err
	}
	if err := os.Rename(p, filepath.Join(dir, config.RootKeyFile)); err != nil {
		return nil, err
	}
	rc, err := root.NewSelfSignedRoot(signer, "test root", "meshca-test", 24*time.Hour*365, time.Now())
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(cfg.Root.File.RootCert, root.EncodePEM(rc), 0o644); err != nil {
		return nil, err
	}
	rt, _, err := intermediate.Open(ctx, cfg, nil, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(rc)
	return &ca{rt: rt, roots: roots, root: rc, maxTTL: cfg.Issuance.MaxCertTTL.Duration}, nil
}

// switchable is the engine with an outage switch: while down, Sign and the
// health check answer as a CA without material does (Unavailable). It
// counts signatures per namespace (requester certmanager:<ns>/<name>).
type switchable struct {
	kubesigner.Engine
	check      func(profile.Name) error
	signDown   atomic.Bool
	checkDown  atomic.Bool
	checkBlock atomic.Pointer[chan struct{}]
	mu         sync.Mutex
	signs      map[string]int
	// beforeSign, per namespace, runs before the engine signs (a test
	// acting as a second replica in between).
	beforeSign sync.Map // namespace -> func()
}

func (s *switchable) Sign(ctx context.Context, req authority.Request) (*authority.Result, error) {
	if s.signDown.Load() {
		return nil, caerr.New(caerr.Unavailable, "ca_not_ready", "the CA has no signing material yet")
	}
	ns, _, _ := strings.Cut(strings.TrimPrefix(req.Requester, "certmanager:"), "/")
	s.mu.Lock()
	s.signs[ns]++
	s.mu.Unlock()
	if f, ok := s.beforeSign.Load(ns); ok {
		f.(func())()
	}
	return s.Engine.Sign(ctx, req)
}

// signed is how many requests of namespace ns reached the engine.
func (s *switchable) signed(ns string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.signs[ns]
}

// Check is the engine check; while checkBlock is set, checks of the
// classical profile (only TestIssuer_InitializingThenCheckedPerGeneration's
// issuer asks for it) wait until the channel is closed.
func (s *switchable) Check(p profile.Name) error {
	if ch := s.checkBlock.Load(); ch != nil && p == profile.Classical {
		<-*ch
	}
	if s.checkDown.Load() {
		return caerr.New(caerr.Unavailable, "ca_not_ready", "the CA has no signing material yet")
	}
	return s.check(p)
}

// harness is both controllers on one kubesigner manager against the
// apiserver, with a real CA behind a switchable engine.
type harness struct {
	ca  *ca
	eng *switchable
	reg *prometheus.Registry
}

func startHarness(ctx context.Context, dir string) (*harness, func() error, error) {
	c, err := newCA(ctx, dir)
	if err != nil {
		return nil, nil, err
	}
	eng := &switchable{Engine: c.rt.Authority, check: certmanager.EngineCheck(c.rt.Authority, nil), signs: map[string]int{}}
	opts := certmanager.Options{Engine: eng, Check: eng.Check, TrustDomain: trustDomain, HealthCheckInterval: healthCheckInterval,
		Clock: clocktesting.NewFakePassiveClock(stamp)}
	ic, err := certmanager.NewIssuerController(opts)
	if err != nil {
		return nil, nil, err
	}
	rc, err := certmanager.NewRequestController(opts)
	if err != nil {
		return nil, nil, err
	}
	reg := prometheus.NewRegistry()
	mgr, err := kubesigner.NewManager(env.Config, kubesigner.ManagerOptions{Metrics: kubesigner.NewMetrics(reg)}, ic, rc)
	if err != nil {
		return nil, nil, err
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	stop := func() error {
		err := <-done
		c.rt.Close()
		return err
	}
	return &harness{ca: c, eng: eng, reg: reg}, stop, nil
}

// start returns the package's harness, with the engine healthy again
// after the test.
func start(t *testing.T) *harness {
	t.Helper()
	t.Cleanup(func() {
		h.eng.signDown.Store(false)
		h.eng.checkDown.Store(false)
		if ch := h.eng.checkBlock.Swap(nil); ch != nil {
			close(*ch)
		}
	})
	return h
}

var nsCounter atomic.Int64

// namespace creates a fresh namespace for one test.
func namespace(t *testing.T) string {
	t.Helper()
	ns := fmt.Sprintf("cm-%d-%d", time.Now().UnixNano()%1e6, nsCounter.Add(1))
	require.NoError(t, env.CreateNamespace(t.Context(), ns))
	return ns
}

func spiffeID(ns, sa string) string { return "spiffe://" + trustDomain + "/ns/" + ns + "/sa/" + sa }

func ecKey(t *testing.T) crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return k
}

func rsaKey(t *testing.T) crypto.Signer {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	return k
}

// certificateCSR is the CSR cert-manager's certificates controller makes
// for crt (pki.GenerateCSR, with usages and BasicConstraints encoded).
func certificateCSR(t *testing.T, key crypto.Signer, crt *cmapi.Certificate) []byte {
	t.Helper()
	crt = crt.DeepCopy()
	if _, ok := key.(*rsa.PrivateKey); ok {
		crt.Spec.PrivateKey = &cmapi.CertificatePrivateKey{Algorithm: cmapi.RSAKeyAlgorithm, Size: 2048}
	} else {
		crt.Spec.PrivateKey = &cmapi.CertificatePrivateKey{Algorithm: cmapi.ECDSAKeyAlgorithm, Size: 256}
	}
	tmpl, err := pki.GenerateCSR(crt, pki.WithEncodeBasicConstraintsInRequest(true))
	require.NoError(t, err)
	der, err := pki.EncodeCSR(tmpl, key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// crSpec is a request as cert-manager makes it for a Certificate with one
// SPIFFE URI and the given usages, duration and isCA.
type crSpec struct {
	ns, name      string
	uri           string
	key           crypto.Signer
	usages        []cmapi.KeyUsage
	duration      time.Duration
	isCA          bool
	issuer        cmmeta.IssuerReference
	request       []byte // overrides the generated CSR
	approve, deny bool
}

func createRequest(t *testing.T, s crSpec) *cmapi.CertificateRequest {
	t.Helper()
	if s.key == nil {
		s.key = ecKey(t)
	}
	if s.request == nil {
		crt := &cmapi.Certificate{Spec: cmapi.CertificateSpec{URIs: []string{s.uri}, Usages: s.usages, IsCA: s.isCA}}
		s.request = certificateCSR(t, s.key, crt)
	}
	cr := &cmapi.CertificateRequest{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: s.name},
		Spec:       cmapi.CertificateRequestSpec{Request: s.request, IssuerRef: s.issuer, Usages: s.usages, IsCA: s.isCA},
	}
	if s.duration > 0 {
		cr.Spec.Duration = &metav1.Duration{Duration: s.duration}
	}
	require.NoError(t, env.CtrlClient.Create(t.Context(), cr))
	switch {
	case s.deny:
		setCondition(t, cr, cmapi.CertificateRequestConditionDenied, "Denied by test")
	case s.approve:
		setCondition(t, cr, cmapi.CertificateRequestConditionApproved, "Approved by test")
	}
	return cr
}

// setCondition sets an approver's condition, as cert-manager's approver
// would (there is no cert-manager in the test cluster).
func setCondition(t *testing.T, cr *cmapi.CertificateRequest, typ cmapi.CertificateRequestConditionType, msg string) {
	t.Helper()
	now := metav1.Now()
	cr.Status.Conditions = append(cr.Status.Conditions, cmapi.CertificateRequestCondition{
		Type: typ, Status: cmmeta.ConditionTrue, Reason: "cert-manager.io", Message: msg, LastTransitionTime: &now,
	})
	require.NoError(t, env.CtrlClient.Status().Update(t.Context(), cr))
}

func meshIssuerRef(name string) cmmeta.IssuerReference {
	return cmmeta.IssuerReference{Group: v1alpha1.Group, Kind: v1alpha1.KindMeshIssuer, Name: name}
}

func createIssuer(t *testing.T, ns, name string, spec v1alpha1.MeshIssuerSpec) *v1alpha1.MeshIssuer {
	t.Helper()
	iss := &v1alpha1.MeshIssuer{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
	require.NoError(t, env.CtrlClient.Create(t.Context(), iss))
	return iss
}

// readyOf is an object's Ready condition ("" when none).
func issuerReady(t *testing.T, obj client.Object) *metav1.Condition {
	t.Helper()
	require.NoError(t, env.CtrlClient.Get(t.Context(), client.ObjectKeyFromObject(obj), obj))
	switch o := obj.(type) {
	case *v1alpha1.MeshIssuer:
		return meta.FindStatusCondition(o.Status.Conditions, v1alpha1.ConditionReady)
	case *v1alpha1.MeshClusterIssuer:
		return meta.FindStatusCondition(o.Status.Conditions, v1alpha1.ConditionReady)
	}
	t.Fatalf("not an issuer: %T", obj)
	return nil
}

func waitIssuer(t *testing.T, obj client.Object, reason string) *metav1.Condition {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c := issuerReady(t, obj)
		if c != nil && c.Reason == reason && c.ObservedGeneration == obj.GetGeneration() {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never %s; last Ready condition %+v", obj.GetName(), reason, c)
		}
	}
}

func getRequest(t *testing.T, cr *cmapi.CertificateRequest) *cmapi.CertificateRequest {
	t.Helper()
	got := &cmapi.CertificateRequest{}
	require.NoError(t, env.CtrlClient.Get(t.Context(), client.ObjectKeyFromObject(cr), got))
	return got
}

func readyCondition(cr *cmapi.CertificateRequest) *cmapi.CertificateRequestCondition {
	for i, c := range cr.Status.Conditions {
		if c.Type == cmapi.CertificateRequestConditionReady {
			return &cr.Status.Conditions[i]
		}
	}
	return nil
}

// waitRequest polls until cr's Ready condition has reason; it fails at
// once if the request ends Failed while another reason is awaited.
func waitRequest(t *testing.T, cr *cmapi.CertificateRequest, reason string) *cmapi.CertificateRequest {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := getRequest(t, cr)
		c := readyCondition(got)
		if c != nil && c.Reason == reason {
			return got
		}
		if c != nil && c.Reason == cmapi.CertificateRequestReasonFailed {
			t.Fatalf("request %s/%s Failed while waiting for %s: %s", cr.Namespace, cr.Name, reason, c.Message)
		}
		if time.Now().After(deadline) {
			t.Fatalf("request %s/%s never %s; conditions %+v", cr.Namespace, cr.Name, reason, got.Status.Conditions)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// parseChain splits status.certificate into certificates.
func parseChain(t *testing.T, b []byte) []*x509.Certificate {
	t.Helper()
	var certs []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		require.NoError(t, err)
		certs = append(certs, c)
	}
	return certs
}

func clientKey(name string) client.ObjectKey { return client.ObjectKey{Name: name} }

func getIssuer(t *testing.T, iss *v1alpha1.MeshIssuer) *v1alpha1.MeshIssuer {
	t.Helper()
	got := &v1alpha1.MeshIssuer{}
	require.NoError(t, env.CtrlClient.Get(t.Context(), client.ObjectKeyFromObject(iss), got))
	return got
}

// reconciles is meshca_controller_reconcile_total{controller, outcome}.
func reconciles(t *testing.T, controller, outcome string) float64 {
	t.Helper()
	n, err := kubesigner.Reconciles(h.reg, controller, kubesigner.Outcome(outcome))
	require.NoError(t, err)
	return n
}

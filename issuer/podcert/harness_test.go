package podcert_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/issuer/kubesigner"
	"github.com/meshca/meshca/issuer/podcert"
	"github.com/meshca/meshca/rotation/intermediate"
	"github.com/meshca/meshca/test/kubeenv"
	"github.com/meshca/meshca/test/logbuf"
)

const trustDomain = "cluster.local"

var kube *kubeenv.Env

func TestMain(m *testing.M) { os.Exit(kubeenv.RunMain(m, &kube)) }

// ca is a real CA (file root, softkms, bbolt), opened as meshca serve
// opens it.
type ca struct {
	rt    *authority.Runtime
	cfg   *config.Config
	roots *x509.CertPool
}

func newCA(t *testing.T) *ca {
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
	roots := x509.NewCertPool()
	roots.AddCert(rc)
	return &ca{rt: rt, cfg: cfg, roots: roots}
}

// records counts the issuance records whose requester starts with prefix.
func (c *ca) records(t *testing.T, prefix string) int {
	t.Helper()
	n := 0
	require.NoError(t, c.rt.Store.ListIssuances(context.Background(), func(r store.Issuance) bool {
		if strings.HasPrefix(r.Requester, prefix) {
			n++
		}
		return true
	}))
	return n
}

// signer runs the PodCertificateRequest controller on its own manager
// (no leader election) until the test ends.
type signer struct {
	name string // the signerName
	reg  *prometheus.Registry
	logs logbuf.Buffer
}

// signerName is a signer of the test's own, so that the controllers of
// other tests never see its requests.
func signerName(t *testing.T) string {
	n := strings.ToLower(strings.NewReplacer("_", "-", "/", "-").Replace(t.Name()))
	if len(n) > 60 {
		n = n[:60]
	}
	return "meshca.test/" + strings.Trim(n, "-")
}

func startSigner(t *testing.T, engine kubesigner.Engine, o podcert.Options) *signer {
	t.Helper()
	return startSignerAs(t, kube.Config, engine, o)
}

// startSignerAs runs the signer with the credentials of rc.
func startSignerAs(t *testing.T, rc *rest.Config, engine kubesigner.Engine, o podcert.Options) *signer {
	t.Helper()
	s := &signer{name: o.SignerName, reg: prometheus.NewRegistry()}
	if s.name == "" {
		s.name = signerName(t)
	}
	o.SignerName, o.Engine, o.TrustDomain = s.name, engine, trustDomain
	o.Log = slog.New(slog.NewJSONHandler(&s.logs, nil))
	c, err := podcert.New(o)
	require.NoError(t, err)
	mgr, err := kubesigner.NewManager(rc, kubesigner.ManagerOptions{Metrics: kubesigner.NewMetrics(s.reg)}, c)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return s
}

// outcomes returns meshca_controller_reconcile_total of the controller for outcome.
func (s *signer) outcomes(t *testing.T, outcome string) float64 {
	t.Helper()
	n, err := kubesigner.Reconciles(s.reg, podcert.Name, kubesigner.Outcome(outcome))
	require.NoError(t, err)
	return n
}

// workload is a Node and a Pod on it (no kubelet runs), as the requests
// of a kubelet would name them.
type workload struct {
	node *corev1.Node
	pod  *corev1.Pod
	sa   *corev1.ServiceAccount
}

var nodeSeq int

func newWorkload(t *testing.T, ns, name, sa string) *workload {
	t.Helper()
	ctx := context.Background()
	nodeSeq++
	node := kube.Node(t, fmt.Sprintf("node-%s-%d", name, nodeSeq))
	pod := kube.Pod(t, ns, name, sa, node.Name)
	acct, err := kube.EnsureServiceAccount(ctx, ns, sa)
	require.NoError(t, err)
	return &workload{node: node, pod: pod, sa: acct}
}

// stubCSR is what the kubelet sends: a PKCS#10 CSR with nothing but the
// key, signed with it.
func stubCSR(t *testing.T, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	require.NoError(t, err)
	return der
}

func p256(t *testing.T) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return k
}

// request creates, as an admin, the PodCertificateRequest a kubelet would
// create for w's pod with key; mutate changes the spec first.
func (w *workload) request(t *testing.T, signerName string, key crypto.Signer, mutate func(*certificatesv1.PodCertificateRequestSpec)) *certificatesv1.PodCertificateRequest {
	t.Helper()
	pcr := &certificatesv1.PodCertificateRequest{
		ObjectMeta: metav1.ObjectMeta{Namespace: w.pod.Namespace, GenerateName: w.pod.Name + "-"},
		Spec: certificatesv1.PodCertificateRequestSpec{
			SignerName:         signerName,
			PodName:            w.pod.Name,
			PodUID:             w.pod.UID,
			ServiceAccountName: w.sa.Name,
			ServiceAccountUID:  w.sa.UID,
			NodeName:           types.NodeName(w.node.Name),
			NodeUID:            w.node.UID,
			StubPKCS10Request:  stubCSR(t, key),
		},
	}
	if mutate != nil {
		mutate(&pcr.Spec)
	}
	got, err := kube.Client.CertificatesV1().PodCertificateRequests(w.pod.Namespace).Create(context.Background(), pcr, metav1.CreateOptions{})
	require.NoError(t, err)
	return got
}

// waitFinished polls until the request has a terminal condition.
func waitFinished(t *testing.T, s *signer, pcr *certificatesv1.PodCertificateRequest) (*certificatesv1.PodCertificateRequest, metav1.Condition) {
	t.Helper()
	var got *certificatesv1.PodCertificateRequest
	deadline := time.Now().Add(20 * time.Second)
	for {
		var err error
		got, err = kube.Client.CertificatesV1().PodCertificateRequests(pcr.Namespace).Get(context.Background(), pcr.Name, metav1.GetOptions{})
		require.NoError(t, err)
		for _, typ := range []string{"Issued", "Denied", "Failed"} {
			if c := meta.FindStatusCondition(got.Status.Conditions, typ); c != nil {
				return got, *c
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("PodCertificateRequest %s/%s not finished: %+v\nlogs:\n%s", pcr.Namespace, pcr.Name, got.Status, s.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

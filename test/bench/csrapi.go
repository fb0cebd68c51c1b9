package main

// The CertificateSigningRequest API at scale: 1000 CSRs created at once,
// each approved right after its creation as istiod approves its own, for
// meshca's signer, against a real test apiserver (test/kubeenv) and a real
// 'meshca serve' (a separate process) with its CSR signer on and the
// controllers' default client rate limits (signers.controllers.qps/burst).
// Reported: the time from the first create to the last status.certificate.
// Target: under istiod's 60 s wait.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/test/kubeenv"
	"github.com/meshca/meshca/test/reporoot"
)

const (
	csrAPITarget = 60 * time.Second
	csrAPISigner = "meshca.io/workload"
	// csrAPICreators create and approve the requests in parallel; their
	// client is not throttled, so that meshca's side is what is measured.
	csrAPICreators = 32
)

// runCSRAPI measures n CSRs created at once until the last is signed.
func runCSRAPI(ctx context.Context, n int) error {
	fmt.Printf("\nCSR API: %d CertificateSigningRequests created and approved at once for %s (meshca serve, real apiserver)\n", n, csrAPISigner)
	root, err := reporoot.Dir()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "meshca-csr-api-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	meshca := filepath.Join(work, "meshca")
	if out, err := goCmd(root, "build", "-o", meshca, "./cmd/meshca").CombinedOutput(); err != nil {
		return fmt.Errorf("go build meshca: %v\n%s", err, out)
	}
	env, err := kubeenv.Start()
	if err != nil {
		return err
	}
	defer env.Stop()
	if err := env.CreateNamespace(ctx, "istio-system"); err != nil {
		return err
	}
	review, err := env.Client.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	requester := review.Status.UserInfo.Username
	kubeconfig := filepath.Join(work, "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig(), 0o600); err != nil {
		return err
	}
	dir := filepath.Join(work, "ca")
	if out, err := exec.Command(meshca, "init", "--dir", dir).CombinedOutput(); err != nil {
		return fmt.Errorf("meshca init: %v\n%s", err, out)
	}
	f, err := os.OpenFile(filepath.Join(dir, "meshca.yaml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	// Leader election on (the Lease in istio-system), as deployed.
	_, err = fmt.Fprintf(f, "kubernetes:\n  kubeconfig: %s\nsigners:\n  csr:\n    enabled: true\n    signerNames: [%s]\n    allowedRequesters: [%q]\n", kubeconfig, csrAPISigner, requester)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	grpcAddr, err := freeAddr()
	if err != nil {
		return err
	}
	opsAddr, err := freeAddr()
	if err != nil {
		return err
	}
	t := &peerTarget{name: "meshca serve", cmd: exec.Command(meshca, "serve", "--dir", dir, "--listen", grpcAddr, "--ops-listen", opsAddr)}
	// Ready once the controllers lead (the Lease is held, the cache synced).
	t.ready = func() error { return leading(opsAddr) }
	t.logTo(filepath.Join(work, "serve.log"))
	if err := t.start(ctx); err != nil {
		return err
	}
	defer stopAll([]*peerTarget{t})

	// The requests, made before the clock starts (istiod gets them from
	// workloads): ECDSA P-256 like istio-agent's, one SPIFFE ID each.
	reqs := make([][]byte, n)
	for i := range reqs {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		id := &url.URL{Scheme: "spiffe", Host: "cluster.local", Path: fmt.Sprintf("/ns/bench/sa/sa-%d", i)}
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id}}, key)
		if err != nil {
			return err
		}
		reqs[i] = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	}
	rc := rest.CopyConfig(env.Config)
	rc.QPS, rc.Burst = -1, 0 // no client-side throttling for the creators
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	csrs := cs.CertificatesV1().CertificateSigningRequests()
	sel := fields.OneTermEqualSelector("spec.signerName", csrAPISigner).String()
	w, err := csrs.Watch(ctx, metav1.ListOptions{FieldSelector: sel})
	if err != nil {
		return err
	}
	defer func() { w.Stop() }()
	lastRV := ""

	start := time.Now()
	var created atomic.Int64
	var createdAll time.Time
	errCh := make(chan error, csrAPICreators)
	errs := errCh
	next := make(chan int)
	var wg sync.WaitGroup
	for range csrAPICreators {
		wg.Go(func() {
			for i := range next {
				if err := createApproved(ctx, csrs, reqs[i]); err != nil {
					errCh <- err
					return
				}
				created.Add(1)
			}
		})
	}
	go func() {
		for i := range n {
			next <- i
		}
		close(next)
		wg.Wait()
		createdAll = time.Now()
		close(errCh)
	}()

	signed := map[string]bool{}
	deadline := time.After(3 * csrAPITarget)
	var last time.Time
	for len(signed) < n {
		select {
		case err, ok := <-errs:
			if ok {
				return fmt.Errorf("create and approve: %w", err)
			}
			errs = nil
		case ev, ok := <-w.ResultChan():
			if !ok {
				// The apiserver ends watches now and then: resume where it ended.
				w.Stop()
				if w, err = csrs.Watch(ctx, metav1.ListOptions{FieldSelector: sel, ResourceVersion: lastRV}); err != nil {
					return fmt.Errorf("watch after %d certificates: %w", len(signed), err)
				}
				continue
			}
			if ev.Type == watch.Error {
				return fmt.Errorf("watch after %d certificates: %v", len(signed), ev.Object)
			}
			r, ok := ev.Object.(*certv1.CertificateSigningRequest)
			if !ok {
				continue
			}
			lastRV = r.ResourceVersion
			for _, c := range r.Status.Conditions {
				if c.Type == certv1.CertificateFailed {
					return fmt.Errorf("%s failed: %s: %s", r.Name, c.Reason, c.Message)
				}
			}
			if len(r.Status.Certificate) > 0 && !signed[r.Name] {
				if err := checkSigned(r); err != nil {
					return err
				}
				signed[r.Name] = true
				last = time.Now()
			}
		case <-deadline:
			return fmt.Errorf("only %d of %d CSRs signed after %s (created %d)", len(signed), n, 3*csrAPITarget, created.Load())
		}
	}
	for err := range errCh { // wait for the creators (createdAll)
		if err != nil {
			return fmt.Errorf("create and approve: %w", err)
		}
	}
	total := last.Sub(start)
	fmt.Printf("CSR API: %d CSRs, created+approved in %s, last status.certificate after %s (target < %s: %s; controllers qps %d, burst %d)\n",
		n, createdAll.Sub(start).Round(time.Millisecond), total.Round(time.Millisecond), csrAPITarget, meets(total < csrAPITarget),
		config.DefaultControllerQPS, config.DefaultControllerBurst)
	return nil
}

// createApproved creates one request as istiod's RA does and approves it.
func createApproved(ctx context.Context, csrs interface {
	Create(context.Context, *certv1.CertificateSigningRequest, metav1.CreateOptions) (*certv1.CertificateSigningRequest, error)
	UpdateApproval(context.Context, string, *certv1.CertificateSigningRequest, metav1.UpdateOptions) (*certv1.CertificateSigningRequest, error)
}, req []byte) error {
	exp := int32(3600)
	r, err := csrs.Create(ctx, &certv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "csr-workload-"},
		Spec: certv1.CertificateSigningRequestSpec{
			Request: req, SignerName: csrAPISigner, ExpirationSeconds: &exp,
			Usages: []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageKeyEncipherment, certv1.UsageServerAuth, certv1.UsageClientAuth},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	r.Status.Conditions = append(r.Status.Conditions, certv1.CertificateSigningRequestCondition{
		Type: certv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "bench", Message: "approved by the benchmark",
	})
	_, err = csrs.UpdateApproval(ctx, r.Name, r, metav1.UpdateOptions{})
	return err
}

// checkSigned checks that the leaf carries the CSR's SPIFFE ID.
func checkSigned(r *certv1.CertificateSigningRequest) error {
	b, _ := pem.Decode(r.Status.Certificate)
	cb, _ := pem.Decode(r.Spec.Request)
	if b == nil || cb == nil {
		return fmt.Errorf("%s: no PEM certificate", r.Name)
	}
	leaf, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return fmt.Errorf("%s: %w", r.Name, err)
	}
	csr, err := x509.ParseCertificateRequest(cb.Bytes)
	if err != nil {
		return err
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != csr.URIs[0].String() {
		return fmt.Errorf("%s: the certificate names %v, not %s", r.Name, leaf.URIs, csr.URIs[0])
	}
	return nil
}

// leading reports whether meshca's controllers hold their Lease
// (meshca_controller_leader 1 on /metrics).
func leading(ops string) error {
	resp, err := http.Get("http://" + ops + "/metrics")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if !strings.Contains(string(b), "\nmeshca_controller_leader 1") {
		return fmt.Errorf("the controllers do not lead yet")
	}
	return nil
}

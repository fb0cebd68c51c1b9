package publish

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/big"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	gofed "github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/test/logbuf"
	"github.com/meshca/meshca/trustbundle/federation"
)

// foreignEndpoint is a foreign trust domain's SPIFFE bundle endpoint
// (https_web) served by go-spiffe's handler, independent of meshca's.
type foreignEndpoint struct {
	td  spiffeid.TrustDomain
	srv *httptest.Server

	mu     sync.Mutex
	bundle *spiffebundle.Bundle
}

func (f *foreignEndpoint) GetBundleForTrustDomain(td spiffeid.TrustDomain) (*spiffebundle.Bundle, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bundle.GetBundleForTrustDomain(td)
}

func (f *foreignEndpoint) serve(b *spiffebundle.Bundle) {
	f.mu.Lock()
	f.bundle = b
	f.mu.Unlock()
}

func newForeignEndpoint(t *testing.T, td string, roots ...*x509.Certificate) *foreignEndpoint {
	t.Helper()
	f := &foreignEndpoint{td: spiffeid.RequireTrustDomainFromString(td)}
	f.serve(spiffebundle.FromX509Authorities(f.td, roots))
	h, err := gofed.NewHandler(f.td, f)
	require.NoError(t, err)
	f.srv = httptest.NewTLSServer(h)
	t.Cleanup(f.srv.Close)
	return f
}

// config is the federation entry of this endpoint, trusting httptest's
// Web PKI root through caFile.
func (f *foreignEndpoint) config(t *testing.T) config.FederatedTrustDomainConfig {
	caFile := filepath.Join(t.TempDir(), "web-roots.pem")
	require.NoError(t, os.WriteFile(caFile, root.EncodePEM(f.srv.Certificate()), 0o600))
	return config.FederatedTrustDomainConfig{TrustDomain: f.td.Name(), BundleEndpointURL: f.srv.URL, Profile: config.FederationProfileWeb, CAFile: caFile}
}

// poller is a federation.Poller feeding p, on a fake clock the test steps.
type poller struct {
	*federation.Poller
	clock *clocktesting.FakeClock
}

func startPoller(t *testing.T, p *Publisher, stateDir string, tds ...config.FederatedTrustDomainConfig) *poller {
	t.Helper()
	cfg := config.FederationConfig{TrustDomains: tds, StateDir: stateDir}
	cfg.Init("")
	clk := clocktesting.NewFakeClock(time.Now())
	fp, err := federation.New(federation.Options{Config: cfg, Sink: p, Clock: clk,
		Log: slog.New(slog.NewTextHandler(logbuf.ForTest(t), nil))})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { fp.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return &poller{Poller: fp, clock: clk}
}

// next lets every waiting fetch of the poller happen (maxRefresh is the
// longest wait).
func (p *poller) next(t *testing.T) {
	t.Helper()
	require.Eventually(t, p.clock.HasWaiters, 10*time.Second, time.Millisecond)
	p.clock.Step(config.DefaultFederationMaxRefresh)
}

// wantFederated checks the federated bundle of td: its label and exactly roots.
func wantFederated(t *testing.T, td string, roots ...*x509.Certificate) func() error {
	return func() error {
		b, err := getBundle(t, FederatedBundleName(td))
		if err != nil {
			return err
		}
		if got := b.Labels[LabelFederatedTrustDomain]; got != td {
			return fmt.Errorf("label %s=%q, want %q", LabelFederatedTrustDomain, got, td)
		}
		if b.Labels[LabelManagedBy] != FieldManager || b.Spec.SignerName != "" {
			return fmt.Errorf("bundle %s: labels %v, signerName %q", b.Name, b.Labels, b.Spec.SignerName)
		}
		got, err := root.ParseCertificates([]byte(b.Spec.TrustBundle))
		if err != nil {
			return err
		}
		if len(got) != len(roots) || !sameCertSet([]byte(b.Spec.TrustBundle), roots) {
			return fmt.Errorf("bundle %s holds %v, want %v", b.Name, subjects(got), subjects(roots))
		}
		return nil
	}
}

func wantNoBundle(t *testing.T, name string) func() error {
	return func() error {
		_, err := getBundle(t, name)
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		return errors.New(name + " still exists")
	}
}

func TestFederation_ForeignRootsArePublishedFollowedAndRemovedWithTheConfig(t *testing.T) {
	ctx := testContext(t)
	ca := newTestCA(t, "Fed")
	rootA, rootB := newTestCA(t, "partner A").root, newTestCA(t, "partner B").root
	ep := newForeignEndpoint(t, "partner.example", rootA)
	stateDir := t.TempDir()

	p := startPublisher(t, config.TrustBundleConfig{})
	require.NoError(t, p.Update(ctx, ca.desired(nil)))
	fp := startPoller(t, p.Publisher, stateDir, ep.config(t))
	waitFor(t, restoreTime, "the federated bundle", wantFederated(t, "partner.example", rootA))
	// meshca's own signer bundle is untouched by the foreign roots.
	require.NoError(t, wantQueryRoots(t, workload, ca.root)())

	// The foreign trust domain adds a root: the bundle follows.
	ep.serve(spiffebundle.FromX509Authorities(ep.td, []*x509.Certificate{rootA, rootB}))
	fp.next(t)
	waitFor(t, restoreTime, "the federated bundle after the foreign change", wantFederated(t, "partner.example", rootA, rootB))

	// A response naming another trust domain is refused and changes nothing.
	before, err := getBundle(t, FederatedBundleName("partner.example"))
	require.NoError(t, err)
	wrong := newTestCA(t, "other")
	ep.serve(spiffebundle.FromX509Authorities(ep.td, []*x509.Certificate{withSPIFFEURI(t, wrong, "spiffe://other.example")}))
	fp.next(t)
	require.Eventually(t, func() bool { return fp.clock.HasWaiters() }, 10*time.Second, time.Millisecond)
	after, err := getBundle(t, FederatedBundleName("partner.example"))
	require.NoError(t, err)
	require.Equal(t, before.ResourceVersion, after.ResourceVersion, "a refused bundle changes nothing")

	// Restart without the trust domain in the configuration: the bundle goes.
	p.stop()
	p2 := startPublisher(t, config.TrustBundleConfig{})
	require.NoError(t, p2.Update(ctx, ca.desired(nil)))
	waitFor(t, restoreTime, "the federated bundle deleted", wantNoBundle(t, FederatedBundleName("partner.example")))
	require.NoError(t, wantQueryRoots(t, workload, ca.root)())
}

func TestFederation_ConfiguredTrustDomainKeepsItsBundleUntilFetched(t *testing.T) {
	ctx := testContext(t)
	ca := newTestCA(t, "Keep")
	rootA := newTestCA(t, "kept A").root
	p := startPublisher(t, config.TrustBundleConfig{})
	require.NoError(t, p.Update(ctx, ca.desired(nil)))
	require.NoError(t, p.SetFederated(ctx, []string{"kept.example"}, map[string][]*x509.Certificate{"kept.example": {rootA}}))
	waitFor(t, restoreTime, "the federated bundle", wantFederated(t, "kept.example", rootA))

	// A restart whose endpoint is not reachable yet: configured, no roots.
	p.stop()
	p2 := startPublisher(t, config.TrustBundleConfig{})
	require.NoError(t, p2.SetFederated(ctx, []string{"kept.example"}, nil))
	require.NoError(t, p2.Update(ctx, ca.desired(nil)))
	waitFor(t, restoreTime, "a complete ClusterTrustBundle reconcile", func() error {
		if !hasMetric(t, p2.reg, "meshca_trustbundle_last_success_timestamp_seconds", map[string]string{"object": objectTrustBundle}) {
			return errors.New("no reconcile of the ClusterTrustBundles yet")
		}
		return nil
	})
	require.NoError(t, wantFederated(t, "kept.example", rootA)(), "the last published roots stay")

	// Removed from the configuration while running.
	require.NoError(t, p2.SetFederated(ctx, nil, nil))
	waitFor(t, restoreTime, "the federated bundle deleted", wantNoBundle(t, FederatedBundleName("kept.example")))
}

func TestSetFederated_RefusesBadInputChangingNothing(t *testing.T) {
	p, err := New(env.Client, config.TrustBundleConfig{}, WithClusterTrustBundleVersion("v1"))
	require.NoError(t, err)
	ca := newTestCA(t, "bad")
	require.ErrorContains(t, p.SetFederated(context.Background(), []string{"a.example"}, map[string][]*x509.Certificate{"b.example": {ca.root}}),
		`roots of "b.example", which is not a configured federated trust domain`)
	require.ErrorContains(t, p.SetFederated(context.Background(), []string{"a.example"}, map[string][]*x509.Certificate{"a.example": {ca.bundle.Cert, nil}}),
		"root 2 of federated trust domain a.example is not a CA certificate")
	require.Nil(t, p.federated.Load())
}

func TestFederatedNames_AreValidObjectNamesAndLabelValues(t *testing.T) {
	long := strings.Repeat("a", 70) + ".example"
	for td, want := range map[string][2]string{
		"partner.example": {"meshca-federated.partner.example", "partner.example"},
		"my_domain":       {"meshca-federated-" + shortHash("my_domain", 16), "my_domain"},
		long:              {"meshca-federated." + long, "sha256-" + shortHash(long, 40)},
	} {
		require.Equal(t, want[0], FederatedBundleName(td), td)
		require.Equal(t, want[1], FederatedLabelValue(td), td)
	}
}

// withSPIFFEURI is a self-signed CA certificate naming uri (a trust
// domain's SPIFFE ID) as its URI SAN.
func withSPIFFEURI(t *testing.T, ca *testCA, uri string) *x509.Certificate {
	t.Helper()
	u, err := url.Parse(uri)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42), Subject: pkix.Name{CommonName: "other root"}, URIs: []*url.URL{u},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, ca.key.Public(), ca.key)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return c
}

// hasMetric reports whether reg exports name with labels.
func hasMetric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) bool {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		for _, m := range f.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			if f.GetName() == name && maps.Equal(got, labels) {
				return true
			}
		}
	}
	return false
}

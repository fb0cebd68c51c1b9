package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	pb "istio.io/api/security/v1alpha1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// metricSum scrapes s's /metrics and sums every sample of the metric name
// (all label sets, or those with every one of labels, each written as
// the exposition format does: code="Unavailable"); ok is false when no
// such sample is exposed.
func (s *server) metricSum(t *testing.T, name string, labels ...string) (sum float64, ok bool) {
	t.Helper()
	code, body := get(t, "http://"+s.ops+"/metrics")
	require.Equal(t, 200, code)
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		if slices.ContainsFunc(labels, func(l string) bool { return !strings.Contains(line, l) }) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		require.NoError(t, err, line)
		sum, ok = sum+v, true
	}
	return sum, ok
}

// issueWithToken asks s's Istio endpoint for a certificate for id,
// authenticating with a ServiceAccount token, and returns the chain.
func issueWithToken(t *testing.T, s *server, rootPEM []byte, token, id string) []string {
	t.Helper()
	chain, err := issueChain(t, s, rootPEM, token, id)
	require.NoError(t, err, s.logs())
	return chain
}

// issueChain is issueWithToken returning the call's error.
func issueChain(t *testing.T, s *server, rootPEM []byte, token, id string) ([]string, error) {
	t.Helper()
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(rootPEM))
	conn, err := grpc.NewClient(s.grpc, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: "meshca.istio-system.svc"})))
	require.NoError(t, err)
	defer conn.Close()
	csrPath, _ := writeCSRWithKey(t, t.TempDir(), id)
	csr, err := os.ReadFile(csrPath)
	require.NoError(t, err)
	cctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+token, "clusterid", "Kubernetes"), 10*time.Second)
	defer cancel()
	resp, err := pb.NewIstioCertificateServiceClient(conn).CreateCertificate(cctx, &pb.IstioCertificateRequest{Csr: string(csr)})
	if err != nil {
		return nil, err
	}
	return resp.CertChain, nil
}

// metricIs reports whether s exposes name with the value want.
func (s *server) metricIs(t *testing.T, name string, want float64) bool {
	v, ok := s.metricSum(t, name)
	return ok && v == want
}

// TestServe_TwoReplicasOneLeader runs two meshca serve replicas (separate
// directories, one PostgreSQL store and key store, the same root) with trustBundle on against one
// apiserver, under deploy/rbac. Exactly one holds the controllers' Lease
// and publishes; both serve the Istio endpoint. SIGTERM on the leader
// releases the Lease, and the other replica takes over within the lease
// timings and restores a deleted ConfigMap.
func TestServe_TwoReplicasOneLeader(t *testing.T) {
	ctx := t.Context()
	const (
		leaseName     = "meshca-controllers"
		leaseDuration = 4 * time.Second
		leader        = "meshca_controller_leader"
		writes        = "meshca_trustbundle_writes_total"
	)
	c := newHACluster(t, "trustBundle:\n  enabled: true\n")
	dirB := c.dirB
	env := c.env
	// B names its CRL ConfigMaps differently, so that whatever B publishes
	// is told apart from A's: a follower that published would create
	// istio-ca-crl-b.
	setYAML(t, dirB, "trustBundle:\n  enabled: true\n", "trustBundle:\n  enabled: true\n  crlConfigMapName: istio-ca-crl-b\n")
	cmExists := func(name string) bool {
		_, err := env.Client.CoreV1().ConfigMaps("shop").Get(ctx, name, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			require.NoError(t, err)
		}
		return err == nil
	}

	a := startServe(t, c.dirA)
	a.waitReady(t, 10*time.Second)
	waitFor(t, 20*time.Second, "replica A leads", func() bool { return a.metricIs(t, leader, 1) })
	b := startServe(t, dirB)
	b.waitReady(t, 10*time.Second)
	waitFor(t, 10*time.Second, "replica B runs its manager as a follower", func() bool { return b.metricIs(t, leader, 0) })

	lease, err := env.Client.CoordinationV1().Leases("istio-system").Get(ctx, leaseName, metav1.GetOptions{})
	require.NoError(t, err)
	require.NotNil(t, lease.Spec.HolderIdentity)
	holderA := *lease.Spec.HolderIdentity
	require.NotEmpty(t, holderA)
	require.Equal(t, int32(4), *lease.Spec.LeaseDurationSeconds, "signers.controllers.leaderElection.leaseDuration")

	rootPEM, err := os.ReadFile(filepath.Join(c.dirA, "root-cert.pem"))
	require.NoError(t, err)
	rootCM := func() error {
		cm, err := env.Client.CoreV1().ConfigMaps("shop").Get(ctx, "istio-ca-root-cert", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cm.Data["root-cert.pem"] != string(rootPEM) {
			return fmt.Errorf("istio-ca-root-cert holds %d bytes, want %d", len(cm.Data["root-cert.pem"]), len(rootPEM))
		}
		return nil
	}
	waitFor(t, 20*time.Second, "the leader publishes istio-ca-root-cert", func() bool { return rootCM() == nil })

	// Only the leader writes; the follower serves the Istio endpoint.
	require.NoError(t, env.Client.CoreV1().ConfigMaps("shop").Delete(ctx, "istio-ca-root-cert", metav1.DeleteOptions{}))
	waitFor(t, 10*time.Second, "the leader restores istio-ca-root-cert", func() bool { return rootCM() == nil })
	waitFor(t, 10*time.Second, "the leader publishes its CRL ConfigMap", func() bool { return cmExists("istio-ca-crl") })
	wroteA, _ := a.metricSum(t, writes)
	require.Positive(t, wroteA, "the leader wrote")
	// A follower that published would have created istio-ca-crl-b within
	// a second of its start (a leader does); watch for 3 s that it does not.
	require.Never(t, func() bool { return cmExists("istio-ca-crl-b") || !b.metricIs(t, writes, 0) }, 3*time.Second, 50*time.Millisecond,
		"the follower published:\n%s", b.logs())
	token, err := env.MintToken(ctx, "shop", "cart", []string{"istio-ca"}, time.Hour)
	require.NoError(t, err)
	for _, s := range []*server{a, b} {
		chain := issueWithToken(t, s, rootPEM, token, "spiffe://cluster.local/ns/shop/sa/cart")
		require.Len(t, chain, 3)
		require.Equal(t, string(rootPEM), chain[2])
	}

	// SIGTERM: A stops its controllers and releases the Lease; B takes over
	// well within the lease duration.
	a.sigterm(t)
	start := time.Now()
	took := waitFor(t, leaseDuration+2*time.Second, "replica B leads", func() bool { return b.metricIs(t, leader, 1) })
	t.Logf("replica B took over %s after replica A exited", took)
	require.Less(t, time.Since(start), leaseDuration, "the Lease was released, not left to expire")
	lease, err = env.Client.CoordinationV1().Leases("istio-system").Get(ctx, leaseName, metav1.GetOptions{})
	require.NoError(t, err)
	require.NotNil(t, lease.Spec.HolderIdentity)
	require.NotEqual(t, holderA, *lease.Spec.HolderIdentity)
	require.NotEmpty(t, *lease.Spec.HolderIdentity)

	// The ConfigMaps are managed again, now by B.
	err = env.Client.CoreV1().ConfigMaps("shop").Delete(ctx, "istio-ca-root-cert", metav1.DeleteOptions{})
	require.True(t, err == nil || apierrors.IsNotFound(err), "%v", err)
	waitFor(t, 10*time.Second, "the new leader restores istio-ca-root-cert", func() bool { return rootCM() == nil })
	waitFor(t, 10*time.Second, "the new leader publishes its own CRL ConfigMap", func() bool { return cmExists("istio-ca-crl-b") })
	// The counter moves once the apply has returned, just after the
	// apiserver holds the ConfigMap.
	waitFor(t, 5*time.Second, "the new leader counts its write", func() bool {
		v, _ := b.metricSum(t, writes)
		return v > 0
	})
	require.NotContains(t, a.logs(), "did not stop in time", "A stopped its controllers before exiting")
}

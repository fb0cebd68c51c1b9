package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/rotation/rootrotation"
	"github.com/meshca/meshca/trustbundle/cacerts"
	"github.com/meshca/meshca/trustbundle/publish"
)

// Bounds of the root rotation's wait for the clusters to trust its roots:
// how long one RefreshRoots waits (the controller retries at its next
// step after that) and how often it reads the clusters meanwhile.
const (
	trustGateWait = 10 * time.Second
	trustGatePoll = 200 * time.Millisecond
)

// rootsGate is the root rotation's gate (rootrotation.RootsGate) for the
// phases publish-both-roots and remove-old-root: it returns only once
// every cluster holds the roots in force, read back from its apiserver —
// a plug-in cluster's cacerts root-cert.pem, a meshca-signs cluster's
// istio-ca-root-cert in its istiod namespace. Until then the phase does
// not complete, so no cluster moves to an intermediate under the new root
// (nor meshca's serving certificate, which a meshca-signs cluster's
// proxies verify with that ConfigMap) before every cluster trusts both
// (Istio's root rotation, phases 1 to 3: "Plug in CA Certificates",
// cacert_rotation). A cluster that cannot be reached holds the phase.
func (cs meshClusters) rootsGate(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, trustGateWait)
	defer cancel()
	t := time.NewTicker(trustGatePoll)
	defer t.Stop()
	for {
		missing := cs.untrusting(ctx)
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not every cluster trusts the roots in force yet (retrying): %s", strings.Join(missing, "; "))
		case <-t.C:
		}
	}
}

// untrusting describes each cluster whose published roots lack one of
// the roots its publisher wants now.
func (cs meshClusters) untrusting(ctx context.Context) []string {
	var out []string
	for _, c := range cs {
		if why := c.untrusted(ctx); why != "" {
			out = append(out, fmt.Sprintf("cluster %q: %s", c.cfg.ID, why))
		}
	}
	return out
}

// untrusted reads what c's istiod reads (a plug-in cluster's cacerts, a
// meshca-signs cluster's namespace root ConfigMap in its istiod
// namespace) and says what is missing ("" when every wanted root is there).
func (c *meshCluster) untrusted(ctx context.Context) string {
	c.pub.mu.Lock()
	want := c.pub.d.Roots
	c.pub.mu.Unlock()
	ns := c.cfg.IstioNamespace
	var (
		b    []byte
		what string
	)
	if c.cfg.PlugIn() {
		what = fmt.Sprintf("Secret %s/%s %s", ns, publish.SecretName, cacerts.KeyRootCert)
		s, err := c.client.CoreV1().Secrets(ns).Get(ctx, publish.SecretName, metav1.GetOptions{})
		if err != nil {
			return fmt.Sprintf("reading %s: %v", what, err)
		}
		b = s.Data[cacerts.KeyRootCert]
	} else {
		what = fmt.Sprintf("ConfigMap %s/%s", ns, publish.RootConfigMapName)
		cm, err := c.client.CoreV1().ConfigMaps(ns).Get(ctx, publish.RootConfigMapName, metav1.GetOptions{})
		if err != nil {
			return fmt.Sprintf("reading %s: %v", what, err)
		}
		b = []byte(cm.Data[cacerts.KeyRootCert])
	}
	have, err := root.ParseCertificates(b)
	if err != nil {
		return fmt.Sprintf("%s: %v", what, err)
	}
	for _, r := range want {
		if !containsRoot(have, r) {
			return fmt.Sprintf("%s does not hold the root %s yet", what, r.Subject)
		}
	}
	return ""
}

func containsRoot(certs []*x509.Certificate, c *x509.Certificate) bool {
	for _, h := range certs {
		if h.Equal(c) {
			return true
		}
	}
	return false
}

// uncountedLineage is a plug-in cluster's intermediate manager as the
// root rotation sees it (rootrotation.UncountedLeaves): the cluster's
// istiod signs its leaves, which meshca does not record, so wait-out-ttl
// lasts rotation.root.ttlMaxWait for it.
type uncountedLineage struct{ rootrotation.Intermediates }

func (uncountedLineage) UncountedLeaves() bool { return true }

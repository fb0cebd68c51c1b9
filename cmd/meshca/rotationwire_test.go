package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/profile"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/crl"
	"github.com/meshca/meshca/issuer/authn"
	"github.com/meshca/meshca/issuer/kubesigner"
	"github.com/meshca/meshca/issuer/tlsconfig"
	"github.com/meshca/meshca/rotation"
	"github.com/meshca/meshca/test/kubeenv"
	"github.com/meshca/meshca/trustbundle/cacerts"
	"github.com/meshca/meshca/trustbundle/publish"
)

// secretWatch records every version of the cacerts Secret.
type secretWatch struct {
	mu       sync.Mutex
	versions []map[string][]byte
}

func (w *secretWatch) all() []map[string][]byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]map[string][]byte(nil), w.versions...)
}

func (w *secretWatch) last() map[string][]byte {
	v := w.all()
	if len(v) == 0 {
		return nil
	}
	return v[len(v)-1]
}

func watchSecret(t *testing.T, env *kubeenv.Env, ns string) *secretWatch {
	t.Helper()
	wi, err := env.Client.CoreV1().Secrets(ns).Watch(t.Context(), metav1.ListOptions{FieldSelector: "metadata.name=" + publish.SecretName})
	require.NoError(t, err)
	t.Cleanup(wi.Stop)
	w := &secretWatch{}
	go func() {
		for ev := range wi.ResultChan() {
			if s, ok := ev.Object.(*corev1.Secret); ok && (ev.Type == watch.Added || ev.Type == watch.Modified) {
				w.mu.Lock()
				w.versions = append(w.versions, s.Data)
				w.mu.Unlock()
			}
		}
	}()
	return w
}

func pemCerts(t *testing.T, b []byte) []*x509.Certificate {
	t.Helper()
	cs, err := root.ParseCertificates(b)
	require.NoError(t, err)
	return cs
}

func pemBlocks(b []byte) int {
	n := 0
	for rest := b; ; n++ {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			return n
		}
	}
}

// An activation moves everything together, with real parts: the CA that
// `meshca init` made, opened by the intermediate rotation manager, which
// rotates (RotateNow) and calls the fan-out; its bbolt store, the CRL manager, the trust
// publisher against a real apiserver, the serving certificate and the
// client-certificate authenticator. Every version of the cacerts Secret
// that the apiserver held has a CRL from each certificate of its
// cert-chain.pem (Istio refuses it otherwise); root-cert.pem keeps its
// bytes. Then the retired generation leaves its grace period and its CRL
// is no longer served nor published.
func TestFanout_ActivationMovesEveryPartTogether(t *testing.T) {
	env, err := kubeenv.Start()
	require.NoError(t, err)
	t.Cleanup(env.Stop)
	ctx := t.Context()
	require.NoError(t, env.CreateNamespace(ctx, "istio-system"))
	secrets := watchSecret(t, env, "istio-system")

	dir := filepath.Join(t.TempDir(), "ca")
	_, err = runMeshca(t, "init", "--dir", dir, "--profile", "classical")
	require.NoError(t, err)
	cfg := config.Defaults(dir)
	cfg.Intermediate.Profile, cfg.Issuance.Profile = profile.Classical, profile.Classical
	cfg.Intermediate.PQAlgorithm = ""
	cfg.TrustBundle.Enabled, cfg.TrustBundle.PublishCACerts, cfg.TrustBundle.IstiodNamespace = true, true, "istio-system"
	cfg.Kubernetes.Kubeconfig = filepath.Join(dir, "kubeconfig")
	require.NoError(t, os.WriteFile(cfg.Kubernetes.Kubeconfig, env.KubeConfig(), 0o600))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	rt, r, err := openCA(ctx, cfg, log, nil)
	rot := r.m
	require.NoError(t, err)
	t.Cleanup(func() { rt.Close() })
	m1 := rt.Authority.Material()

	trust, err := newTrustPublisher(cfg, env.Config, m1, log, reg)
	require.NoError(t, err)
	crls, err := newCRLManager(ctx, cfg, rt, trust.setCRLs, log, reg)
	require.NoError(t, err)
	require.NoError(t, trust.start(ctx, cfg))
	ctrlCtx, stopControllers := context.WithCancel(ctx)
	waitControllers, err := startControllers(ctrlCtx, controllerDeps{cfg: cfg, rt: rt, rc: env.Config, log: log, reg: reg},
		[]kubesigner.Controller{trust.controller()}, func(err error) { t.Errorf("controllers stopped: %v", err) })
	require.NoError(t, err)
	t.Cleanup(func() { stopControllers(); waitControllers() })
	serving := &tlsconfig.ServingCert{Authority: rt.Authority, DNSNames: []string{"meshca.test"}, TTL: time.Hour, Log: log}
	require.NoError(t, serving.Start(ctx))
	clientAuth := &authn.ClientCert{Trust: rt.Authority, Records: rt.Store, TrustDomain: cfg.TrustDomain}

	// A workload certificate of generation 1, before the rotation.
	csr, _ := p256CSR(t, "spiffe://cluster.local/ns/default/sa/app")
	old, err := rt.Authority.Sign(ctx, authority.Request{CSR: csr, Identity: mustURL(t, "spiffe://cluster.local/ns/default/sa/app"), TTL: time.Hour})
	require.NoError(t, err)
	oldLeaf, err := old.Leaf()
	require.NoError(t, err)

	require.Eventually(t, func() bool { s := secrets.last(); return s != nil && len(s[cacerts.KeyCRL]) > 0 }, 30*time.Second, 10*time.Millisecond)
	rootBytes := bytes.Clone(secrets.last()[cacerts.KeyRootCert])
	require.Equal(t, root.EncodePEM(m1.Bundle.Cert), secrets.last()[cacerts.KeyCACert])

	// A stale pq-anchor.pem: a classical CA must leave none behind.
	anchor := filepath.Join(t.TempDir(), config.PQAnchorFile)
	require.NoError(t, os.WriteFile(anchor, []byte("stale"), 0o644))

	f := &fanout{authority: rt.Authority, crls: crls, rootSource: rt.Root, trust: trust, serving: serving, anchorPath: anchor, log: log}
	subscribeRotation(ctx, rot, f)
	m2, err := rot.RotateNow(ctx, "test")
	require.NoError(t, err)
	require.NotEqual(t, m1.Generation, m2.Generation)
	require.Equal(t, []*authority.Material{m1}, rot.Retained(), "generation 1's leaves are in use: it is retained")
	require.Empty(t, rot.RotationStatus().Problem, "every subscriber applied the change")

	// The Istio endpoint's chain: a new leaf comes from generation 2.
	require.Same(t, m2, rt.Authority.Material())
	res, err := rt.Authority.Sign(ctx, authority.Request{CSR: csr, Identity: mustURL(t, "spiffe://cluster.local/ns/default/sa/app"), TTL: time.Hour})
	require.NoError(t, err)
	require.Equal(t, []string{string(root.EncodePEM(m2.Bundle.Cert)), m2.RootsPEM()}, res.Chain[1:])
	// The authenticator: generation 1's leaf still authenticates (grace).
	caller, err := clientAuth.Authenticate(ctx, authn.Credentials{PeerCertificates: []*x509.Certificate{oldLeaf, m1.Bundle.Cert}})
	require.NoError(t, err)
	require.Equal(t, "spiffe://cluster.local/ns/default/sa/app", caller.Identity.String())
	// The serving certificate.
	require.NoError(t, serving.Leaf().CheckSignatureFrom(m2.Bundle.Cert))
	require.Equal(t, m2.Bundle.Cert.Raw, serving.Current().Certificate[1])
	// pq-anchor.pem.
	_, err = os.Stat(anchor)
	require.ErrorIs(t, err, os.ErrNotExist)
	// The CRLs: generation 2's is built, 1's is kept, the root's stays.
	scopes := map[string]bool{}
	for _, p := range crls.CRLs() {
		scopes[p.Scope] = true
	}
	require.Equal(t, map[string]bool{crl.ScopeGeneration(m2.Generation): true, crl.ScopeGeneration(m1.Generation): true, crl.ScopeRoot: true}, scopes)
	// cacerts: the new intermediate, its key and chain in one write, with
	// its CRL; root-cert.pem byte for byte as before.
	require.Eventually(t, func() bool {
		return bytes.Equal(secrets.last()[cacerts.KeyCACert], root.EncodePEM(m2.Bundle.Cert))
	}, 30*time.Second, 10*time.Millisecond)
	s := secrets.last()
	require.Equal(t, root.EncodePEM(m2.Bundle.Chain()...), s[cacerts.KeyCertChain])
	require.Equal(t, rootBytes, s[cacerts.KeyRootCert])
	require.Equal(t, 3, pemBlocks(s[cacerts.KeyCRL]))
	keyPEM, _ := pem.Decode(s[cacerts.KeyCAKey])
	require.NotNil(t, keyPEM)
	k, err := x509.ParsePKCS8PrivateKey(keyPEM.Bytes)
	if err != nil {
		k, err = x509.ParseECPrivateKey(keyPEM.Bytes)
	}
	require.NoError(t, err)
	require.True(t, k.(*ecdsa.PrivateKey).PublicKey.Equal(m2.Bundle.Cert.PublicKey), "ca-key.pem is generation 2's key")
	requireCACertsConsistent := func() {
		t.Helper()
		for i, v := range secrets.all() {
			missing, err := crl.MissingCRLs(pemCerts(t, v[cacerts.KeyCertChain]), v[cacerts.KeyCRL])
			require.NoError(t, err)
			require.Empty(t, missing, "cacerts version %d: ca-crl.pem lacks a CRL from a certificate of cert-chain.pem", i)
			require.True(t, bytes.HasPrefix(v[cacerts.KeyRootCert], rootBytes), "cacerts version %d: root-cert.pem keeps root A's bytes first", i)
		}
	}
	requireCACertsConsistent()
	require.Equal(t, rootBytes, s[cacerts.KeyRootCert])

	// New roots (a root rotation publishes root B next to A): the same
	// intermediate with both roots. root-cert.pem gets B's bytes appended
	// to A's; the endpoint's last element holds both; cacerts keeps the
	// intermediate; the serving certificate (its chain stops below the
	// root) is not reissued.
	cur := serving.Current()
	keyB, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	rootA := m2.Bundle.Roots[0]
	rootB, err := root.NewSelfSignedRoot(keyB, "meshca fan-out test root B", "meshca", 24*time.Hour, time.Now())
	require.NoError(t, err)
	mAB, err := authority.NewMaterial(m2.Generation, &root.Bundle{Cert: m2.Bundle.Cert, Roots: []*x509.Certificate{rootA, rootB}}, root.CAKey{Signer: m2.Signer}, profile.Classical)
	require.NoError(t, err)
	for _, sub := range f.subscribers() {
		require.NoError(t, sub(ctx, rotation.Change{Active: mAB, Retained: []*authority.Material{m1}, Reason: rotation.ReasonRoots}))
	}
	res, err = rt.Authority.Sign(ctx, authority.Request{CSR: csr, Identity: mustURL(t, "spiffe://cluster.local/ns/default/sa/app"), TTL: time.Hour})
	require.NoError(t, err)
	require.Equal(t, string(root.EncodePEM(rootA, rootB)), res.Chain[len(res.Chain)-1])
	require.Eventually(t, func() bool {
		return len(pemCerts(t, secrets.last()[cacerts.KeyRootCert])) == 2
	}, 30*time.Second, 10*time.Millisecond)
	s = secrets.last()
	require.True(t, bytes.HasPrefix(s[cacerts.KeyRootCert], rootBytes), "root B is appended after root A's bytes")
	require.Equal(t, []*x509.Certificate{rootA, rootB}, pemCerts(t, s[cacerts.KeyRootCert]))
	require.Equal(t, root.EncodePEM(m2.Bundle.Cert), s[cacerts.KeyCACert])
	require.Equal(t, root.EncodePEM(m2.Bundle.Chain()...), s[cacerts.KeyCertChain])
	require.Same(t, cur, serving.Current(), "new roots alone: no new serving certificate")

	// Generation 1 leaves its grace period.
	for _, sub := range f.subscribers() {
		require.NoError(t, sub(ctx, rotation.Change{Active: mAB, Reason: rotation.ReasonRetired}))
	}
	for _, p := range crls.CRLs() {
		require.NotEqual(t, crl.ScopeGeneration(m1.Generation), p.Scope)
	}
	require.Eventually(t, func() bool { return pemBlocks(secrets.last()[cacerts.KeyCRL]) == 2 }, 30*time.Second, 10*time.Millisecond)
	requireCACertsConsistent()
	require.Same(t, cur, serving.Current(), "the same intermediate: no new serving certificate")
}

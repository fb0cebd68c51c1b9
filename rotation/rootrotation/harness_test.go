package rootrotation

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/profile"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/ca/store/boltstore"
	"github.com/meshca/meshca/rotation/alert"
)

var t0 = time.Date(2026, time.December, 5, 12, 0, 0, 0, time.UTC)

// fileRoot is a root certificate and key written as files.
type fileRoot struct {
	cert *x509.Certificate
	spec config.RootConfig
}

func newFileRoot(t *testing.T, name string, now time.Time, lifetime time.Duration) fileRoot {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	c, err := root.NewSelfSignedRoot(k, name, "meshca test", lifetime, now)
	require.NoError(t, err)
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "root-cert.pem"), filepath.Join(dir, "root-key.pem")
	require.NoError(t, os.WriteFile(certPath, root.EncodePEM(c), 0o644))
	require.NoError(t, keys.WriteKeyFile(keyPath, k))
	return fileRoot{cert: c, spec: config.RootConfig{Source: config.RootSourceFile, File: config.FileRootConfig{RootCert: certPath, RootKey: keyPath}}}
}

// harness is a controller over a real bbolt store and real file roots;
// the intermediate manager is fakeManager, which mints through the
// composite source as the real one does.
type harness struct {
	t      *testing.T
	clk    *clocktesting.FakeClock
	st     *boltstore.Store
	path   string
	keyDir string
	km     *keys.Manager
	a, b   fileRoot
	src    *Source
	mgr    *fakeManager
	alerts *fakeAlerts
	c      *Controller
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{t: t, clk: clocktesting.NewFakeClock(t0), path: filepath.Join(t.TempDir(), "meshca.db"), alerts: &fakeAlerts{}}
	var err error
	h.keyDir = t.TempDir()
	h.km, err = keys.Open(context.Background(), keys.Config{Type: "softkms", Dir: h.keyDir})
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.km.Close() })
	h.a = newFileRoot(t, "root A", t0.Add(-time.Hour), 5*365*24*time.Hour)
	h.b = newFileRoot(t, "root B", t0.Add(-time.Minute), 10*365*24*time.Hour)
	h.open()
	// The first intermediate, under A, as serve mints it.
	_, err = h.mgr.RotateNow(context.Background(), "initial")
	require.NoError(t, err)
	return h
}

func (h *harness) newSource(_ context.Context, rc config.RootConfig) (root.Source, error) {
	return &root.FileSource{RootCert: rc.File.RootCert, RootKey: rc.File.RootKey, RootPQKey: rc.File.RootPQKey,
		Profile: profile.Classical, Keys: h.km, Clock: h.clk}, nil
}

// open (re)opens the store and builds the source, manager and controller
// as serve does.
func (h *harness) open() {
	t := h.t
	var err error
	h.st, err = boltstore.Open(h.path)
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.st.Close() })
	a, err := h.newSource(context.Background(), h.a.spec)
	require.NoError(t, err)
	h.src, err = NewSource(a)
	require.NoError(t, err)
	h.mgr = &fakeManager{src: h.src.RootSource(), st: h.st, clk: h.clk}
	defer h.mgr.load()
	h.c, err = New(context.Background(), Options{
		Store: h.st, Intermediates: h.mgr, Source: h.src, NewSource: h.newSource, OldRootConfig: h.a.spec,
		Intermediate: config.IntermediateConfig{Profile: profile.Classical, KeyAlgorithm: keys.ECP256, Lifetime: config.Duration{Duration: 30 * 24 * time.Hour},
			CommonName: "meshca intermediate", Organization: "meshca"},
		Clock: h.clk, Alerts: h.alerts, Interval: time.Minute,
		DefaultCertTTL: 24 * time.Hour, MaxCertTTL: 48 * time.Hour,
	})
	require.NoError(t, err)
}

// restart is a crash: the store closes without anything else.
func (h *harness) restart() {
	require.NoError(h.t, h.st.Close())
	h.open()
}

func (h *harness) start() {
	h.t.Helper()
	_, err := h.c.Start(context.Background(), StartRequest{NewRoot: h.b.spec, By: "test"})
	require.NoError(h.t, err)
}

func (h *harness) journal() store.RootRotation {
	h.t.Helper()
	r, err := h.st.GetRootRotation(context.Background())
	require.NoError(h.t, err)
	return r
}

// issue records a leaf of the active generation issued now with ttl.
func (h *harness) issue(serial string, ttl time.Duration) {
	h.t.Helper()
	h.issueTo(serial, "spiffe://cluster.local/ns/default/sa/x", ttl)
}

// issueTo records a workload certificate of identity id issued now.
func (h *harness) issueTo(serial, id string, ttl time.Duration) {
	h.t.Helper()
	now := h.clk.Now()
	require.NoError(h.t, h.st.PutIssuance(context.Background(), store.Issuance{
		Serial: serial, Identity: id, NotBefore: now, NotAfter: now.Add(ttl),
		Fingerprint: serial, Profile: "classical", Requester: "test", Generation: h.mgr.active, IssuedAt: now,
	}))
}

// fakeManager stands in for rotation/intermediate.Manager: RotateNow mints
// a key and has the root source sign it, records and activates the
// generation in the store; RefreshRoots publishes the source's roots as
// the trust publisher writes root-cert.pem.
type fakeManager struct {
	// signer is the lineage (store.Generation.Signer); "" the default.
	signer string
	src    root.Source
	st     *boltstore.Store
	clk    *clocktesting.FakeClock

	mu        sync.Mutex
	active    uint64
	bundle    *root.Bundle
	published [][]byte
	rotations int
	refreshes int
	fail      error
}

func (m *fakeManager) RotateNow(ctx context.Context, _ string) (*authority.Material, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, m.fail
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	req, err := root.NewIntermediateRequest(root.CAKey{Signer: k}, root.IntermediateTemplate{CommonName: "meshca intermediate", Organization: "meshca", Lifetime: 30 * 24 * time.Hour}, m.clk.Now())
	if err != nil {
		return nil, err
	}
	b, err := m.src.MintIntermediate(ctx, req)
	if err != nil {
		return nil, err
	}
	if err := b.Verify(m.clk.Now()); err != nil {
		return nil, err
	}
	var chain [][]byte
	for _, c := range b.Chain()[1:] {
		chain = append(chain, c.Raw)
	}
	g, err := m.st.AddGeneration(ctx, store.Generation{CertDER: b.Cert.Raw, ChainDER: chain, KeyRef: "mem", Source: m.src.Kind(), Fingerprint: b.Cert.SerialNumber.String(), CreatedAt: m.clk.Now(), Signer: m.signer})
	if err != nil {
		return nil, err
	}
	if err := m.st.ActivateGeneration(ctx, g.ID, m.clk.Now()); err != nil {
		return nil, err
	}
	m.active, m.bundle = g.ID, b
	m.rotations++
	m.published = append(m.published, root.EncodePEM(b.Roots...))
	return nil, nil
}

// load takes the active generation of the store with the source's roots,
// as the manager does when meshca starts.
func (m *fakeManager) load() {
	gens, err := m.st.ListGenerations(context.Background())
	if err != nil {
		panic(err)
	}
	for _, g := range gens {
		if !g.Active() || g.Signer != m.signer {
			continue
		}
		c, err := x509.ParseCertificate(g.CertDER)
		if err != nil {
			panic(err)
		}
		roots, err := m.src.Roots(context.Background())
		if err != nil {
			panic(err)
		}
		m.active, m.bundle = g.ID, &root.Bundle{Cert: c, Roots: roots}
	}
}

func (m *fakeManager) RefreshRoots(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	roots, err := m.src.Roots(ctx)
	if err != nil {
		return err
	}
	nb := *m.bundle
	nb.Roots = roots
	if err := nb.Verify(m.clk.Now()); err != nil {
		return errors.New("the active intermediate chains to none of the new roots")
	}
	m.bundle = &nb
	m.refreshes++
	m.published = append(m.published, root.EncodePEM(roots...))
	return nil
}

func (m *fakeManager) lastPublished() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.published[len(m.published)-1]
}

func (m *fakeManager) setFail(err error) {
	m.mu.Lock()
	m.fail = err
	m.mu.Unlock()
}

// fakeAlerts records raises and clears.
type fakeAlerts struct {
	mu     sync.Mutex
	raised []alert.Alert
	clears []alert.Key
	// failClears fails that many Clear calls first (the alert store down).
	failClears int
}

func (f *fakeAlerts) Raise(_ context.Context, a alert.Alert) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.raised = append(f.raised, a)
	return nil
}

func (f *fakeAlerts) Clear(_ context.Context, k alert.Key) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failClears > 0 {
		f.failClears--
		return errors.New("the alert store is unavailable")
	}
	f.clears = append(f.clears, k)
	return nil
}

func (f *fakeAlerts) fingerprints(rule string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, a := range f.raised {
		if a.Rule == rule {
			out = append(out, a.Fingerprint)
		}
	}
	return out
}

// pemOf is the PEM of certs in order.
func pemOf(certs ...*x509.Certificate) []byte { return root.EncodePEM(certs...) }

var _ = bytes.Contains

package vault

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.step.sm/crypto/pemutil"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/policy"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/test/vaultenv"
)

// One real Vault 1.21.0 dev server for the whole package.
var vaultEnv *vaultenv.Env

func TestMain(m *testing.M) { os.Exit(vaultenv.RunMain(m, &vaultEnv)) }

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// pki is a PKI mount with an EC P-384 root generated inside Vault, the
// least-privilege policy of deploy/examples/vault-policy.hcl for it, and
// an AppRole whose tokens carry only that policy.
type pki struct {
	mount  string
	policy string
	role   string
	root   *x509.Certificate
	rootID string // Vault's key_id of the root's key
	// rootKey is the root's private key, of a PKI made by
	// newExportedPKI only (Vault's root/generate/exported).
	rootKey crypto.Signer
	roleID  string
	secret  string // a file holding a secret_id
}

var (
	enableAppRole sync.Once
	fixtures      atomic.Int64 // keeps names unique when tests run more than once
)

func newPKI(t *testing.T, name string) *pki { t.Helper(); return newPKIOf(t, name, "internal") }

// newExportedPKI is newPKI with the root's private key returned by Vault
// (root/generate/exported), so that a test can sign what Vault would.
func newExportedPKI(t *testing.T, name string) *pki { t.Helper(); return newPKIOf(t, name, "exported") }

func newPKIOf(t *testing.T, name, keyMode string) *pki {
	t.Helper()
	ctx := testCtx(t)
	c := vaultEnv.Client
	name = fmt.Sprintf("%s-%d", name, fixtures.Add(1))
	p := &pki{mount: "pki-" + name, policy: "meshca-" + name, role: "meshca-" + name}
	require.NoError(t, c.Sys().MountWithContext(ctx, p.mount, &vaultapi.MountInput{
		Type: "pki", Config: vaultapi.MountConfigInput{MaxLeaseTTL: "87600h"},
	}))
	sec, err := c.Logical().WriteWithContext(ctx, p.mount+"/root/generate/"+keyMode, map[string]any{
		"common_name": "Enterprise Root " + name, "key_type": "ec", "key_bits": 384, "ttl": "87600h",
	})
	require.NoError(t, err)
	p.root = parsePEMCert(t, sec.Data["certificate"].(string))
	p.rootID, _ = sec.Data["key_id"].(string)
	require.NotEmpty(t, p.rootID)
	if keyMode == "exported" {
		k, err := pemutil.Parse([]byte(sec.Data["private_key"].(string)))
		require.NoError(t, err)
		p.rootKey = k.(crypto.Signer)
	}

	hcl, err := os.ReadFile(filepath.Join("..", "..", "..", "deploy", "examples", "vault-policy.hcl"))
	require.NoError(t, err)
	require.NoError(t, c.Sys().PutPolicyWithContext(ctx, p.policy, strings.ReplaceAll(string(hcl), `"pki/`, `"`+p.mount+"/")))
	p.addRole(t, p.role, map[string]any{"token_policies": []string{p.policy}})
	return p
}

// addRole creates AppRole role with opts (token_no_default_policy, 1h
// tokens unless opts say otherwise) and points p.roleID/p.secret at it.
func (p *pki) addRole(t *testing.T, role string, opts map[string]any) {
	t.Helper()
	ctx := testCtx(t)
	c := vaultEnv.Client
	enableAppRole.Do(func() {
		require.NoError(t, c.Sys().EnableAuthWithOptionsWithContext(ctx, "approle", &vaultapi.EnableAuthOptions{Type: "approle"}))
	})
	body := map[string]any{"token_no_default_policy": true, "token_ttl": "1h", "token_max_ttl": "24h"}
	for k, v := range opts {
		body[k] = v
	}
	_, err := c.Logical().WriteWithContext(ctx, "auth/approle/role/"+role, body)
	require.NoError(t, err)
	rid, err := c.Logical().ReadWithContext(ctx, "auth/approle/role/"+role+"/role-id")
	require.NoError(t, err)
	sid, err := c.Logical().WriteWithContext(ctx, "auth/approle/role/"+role+"/secret-id", nil)
	require.NoError(t, err)
	p.roleID = rid.Data["role_id"].(string)
	p.secret = filepath.Join(t.TempDir(), "secret-id")
	require.NoError(t, os.WriteFile(p.secret, []byte(sid.Data["secret_id"].(string)+"\n"), 0o600))
}

// config is meshca's configuration for p with AppRole login and test-sized
// backoff.
func (p *pki) config() config.VaultConfig {
	cfg := config.VaultConfig{
		Address:        vaultEnv.Addr,
		Mount:          p.mount,
		Auth:           config.VaultAuthConfig{Method: config.VaultAuthAppRole, RoleID: p.roleID, SecretIDFile: p.secret},
		InitialBackoff: config.Duration{Duration: 20 * time.Millisecond},
		MaxBackoff:     config.Duration{Duration: 200 * time.Millisecond},
		HealthInterval: config.Duration{Duration: time.Minute},
	}
	cfg.Init()
	return cfg
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newSource opens a Source with its own metrics registry.
func newSource(t *testing.T, cfg config.VaultConfig, opts ...Option) (*Source, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	src, err := New(testCtx(t), cfg, append([]Option{WithLogger(quietLog()), WithRegisterer(reg)}, opts...)...)
	require.NoError(t, err)
	return src, reg
}

func newKeys(t *testing.T) (*keys.Manager, string) {
	t.Helper()
	dir := t.TempDir()
	km, err := keys.Open(context.Background(), keys.Config{Type: "softkms", Dir: dir})
	require.NoError(t, err)
	t.Cleanup(func() { km.Close() })
	return km, dir
}

var tmpl = root.IntermediateTemplate{CommonName: "meshca intermediate", Organization: "meshca", Lifetime: 24 * time.Hour}

func parsePEMCert(t *testing.T, s string) *x509.Certificate {
	t.Helper()
	certs, err := root.ParseCertificates([]byte(s))
	require.NoError(t, err)
	return certs[0]
}

func writePEM(t *testing.T, dir, name string, certs ...*x509.Certificate) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, root.EncodePEM(certs...), 0o600))
	return p
}

// signLeaf signs an Istio-like workload certificate (empty subject,
// critical SPIFFE URI SAN) under inter with its key.
func signLeaf(t *testing.T, inter *x509.Certificate, interKey any) *x509.Certificate {
	t.Helper()
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	serial, err := policy.RandomSerial()
	require.NoError(t, err)
	id, _ := url.Parse("spiffe://cluster.local/ns/default/sa/app")
	now := time.Now()
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: serial,
		NotBefore:    now.Add(-2 * time.Minute), NotAfter: now.Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:        []*url.URL{id},
	}, inter, leafKey.Public(), interKey)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return leaf
}

// stepSleeper drives a background loop: the loop blocks in sleep until the
// test calls wake, and next reports how long it asked to sleep.
type stepSleeper struct {
	asked   chan time.Duration
	release chan struct{}
}

func newStepSleeper() *stepSleeper {
	return &stepSleeper{asked: make(chan time.Duration), release: make(chan struct{})}
}

func (s *stepSleeper) sleep(ctx context.Context, d time.Duration) error {
	select {
	case s.asked <- d:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-s.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// next waits until the loop has finished a round and asks to sleep.
func (s *stepSleeper) next(t *testing.T) time.Duration {
	t.Helper()
	select {
	case d := <-s.asked:
		return d
	case <-time.After(30 * time.Second):
		t.Fatal("the loop did not finish its round within 30s")
		return 0
	}
}

// wake ends the loop's current sleep.
func (s *stepSleeper) wake() { s.release <- struct{}{} }

// runLoop runs loop until the test ends.
func runLoop(t *testing.T, loop func(context.Context)) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { loop(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// gauge returns the value of metric name in reg, or -1 when absent.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			require.Equal(t, "source", m.GetLabel()[0].GetName())
			require.Equal(t, SourceName, m.GetLabel()[0].GetValue())
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

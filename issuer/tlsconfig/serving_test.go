package tlsconfig_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/caerr"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/policy"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/issuer/tlsconfig"
)

const servingName = "meshca.istio-system.svc"

// testCA is a real CA: a file root, softkms keys and a bbolt store, opened
// by authority.Open as `meshca serve` does.
type testCA struct {
	rt    *authority.Runtime
	cfg   *config.Config
	roots *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Defaults(dir)
	km, err := keys.Open(context.Background(), keys.Config{Type: "softkms", Dir: dir})
	require.NoError(t, err)
	signer, p, err := km.Create("root-tmp", keys.ECP256)
	require.NoError(t, err)
	require.NoError(t, os.Rename(p, filepath.Join(dir, config.RootKeyFile)))
	require.NoError(t, km.Close())
	rc, err := root.NewSelfSignedRoot(signer, "test root", "meshca-test", 365*24*time.Hour, time.Now())
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(cfg.Root.File.RootCert, root.EncodePEM(rc), 0o644))

	rt, err := authority.Open(context.Background(), cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	require.NoError(t, err)
	t.Cleanup(func() { rt.Close() })
	roots := x509.NewCertPool()
	roots.AddCert(rc)
	return &testCA{rt: rt, cfg: cfg, roots: roots}
}

// nextGeneration mints a second intermediate under the same root, as
// rotation does, without activating it in the authority.
func (c *testCA) nextGeneration(t *testing.T) *authority.Material {
	t.Helper()
	cur := c.rt.Authority.Material()
	rootSigner, err := c.rt.Keys.Signer(c.cfg.Root.File.RootKey)
	require.NoError(t, err)
	next, err := c.rt.Loader.Mint(context.Background(), cur.Bundle.Roots, root.CAKey{Signer: rootSigner})
	require.NoError(t, err)
	require.NotEqual(t, cur.Generation, next.Generation)
	return next
}

// servingRecords counts the serving certificates the authority recorded.
func (c *testCA) servingRecords(t *testing.T) int {
	t.Helper()
	n := 0
	require.NoError(t, c.rt.Store.ListIssuances(context.Background(), func(r store.Issuance) bool {
		if r.Profile == authority.ProfileServing {
			n++
		}
		return true
	}))
	return n
}

// fakeClock is ServingCert.Now, moved by the test.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

func newServing(ca *testCA, clk *fakeClock) *tlsconfig.ServingCert {
	return &tlsconfig.ServingCert{
		Authority: ca.rt.Authority,
		DNSNames:  []string{servingName},
		IPs:       []net.IP{net.IPv4(127, 0, 0, 1)},
		TTL:       time.Hour,
		Now:       clk.Now,
	}
}

// renewAt is half-way through leaf's validity.
func renewAt(leaf *x509.Certificate) time.Time {
	return leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2)
}

func current(t *testing.T, s *tlsconfig.ServingCert) *tls.Certificate {
	t.Helper()
	c, err := s.Current(context.Background())
	require.NoError(t, err)
	return c
}

func TestServingCert_IssuedByTheAuthorityAndChainsToTheMeshRoot(t *testing.T) {
	ca := newTestCA(t)
	s := newServing(ca, &fakeClock{now: time.Now()})
	require.Nil(t, s.Leaf(), "nothing is issued before the first use")

	c := current(t, s)
	m := ca.rt.Authority.Material()
	leaf := c.Leaf
	require.Same(t, leaf, s.Leaf())
	require.Equal(t, []string{servingName}, leaf.DNSNames)
	require.Len(t, leaf.IPAddresses, 1)
	require.True(t, leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)))
	require.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, leaf.ExtKeyUsage)
	require.Equal(t, time.Hour+policy.Backdate, leaf.NotAfter.Sub(leaf.NotBefore), "TTL plus the backdate")

	require.Len(t, c.Certificate, 2, "leaf and intermediate, without the root")
	require.Equal(t, leaf.Raw, c.Certificate[0])
	require.Equal(t, m.Bundle.Cert.Raw, c.Certificate[1])
	inters := x509.NewCertPool()
	inters.AddCert(m.Bundle.Cert)
	_, err := leaf.Verify(x509.VerifyOptions{DNSName: servingName, Roots: ca.roots, Intermediates: inters})
	require.NoError(t, err)

	key, ok := c.PrivateKey.(*ecdsa.PrivateKey)
	require.True(t, ok)
	require.True(t, key.PublicKey.Equal(leaf.PublicKey), "the private key matches the leaf")
	require.Equal(t, 1, ca.servingRecords(t), "the serving certificate is recorded")
}

func TestServingCert_ServesRealHandshakesAndIsCachedBetweenThem(t *testing.T) {
	ca := newTestCA(t)
	s := newServing(ca, &fakeClock{now: time.Now()})
	srv, err := tlsconfig.Server(tlsconfig.Default, s.GetCertificate)
	require.NoError(t, err)
	client := &tls.Config{RootCAs: ca.roots, ServerName: servingName}

	var serials []string
	for range 3 {
		r := handshake(t, srv, client)
		require.NoError(t, r.clientErr, "istio-agent's view: SNI name and mesh root verify")
		require.NoError(t, r.serverErr)
		require.Len(t, r.client.PeerCertificates, 2)
		serials = append(serials, r.client.PeerCertificates[0].SerialNumber.String())
	}
	require.Equal(t, serials[0], serials[1])
	require.Equal(t, serials[0], serials[2])
	require.Equal(t, 1, ca.servingRecords(t), "one issuance for three handshakes")
}

func TestServingCert_ConcurrentHandshakesShareOneIssuance(t *testing.T) {
	ca := newTestCA(t)
	s := newServing(ca, &fakeClock{now: time.Now()})
	got := make([]*tls.Certificate, 16)
	var wg sync.WaitGroup
	for i := range got {
		wg.Go(func() {
			c, err := s.GetCertificate(&tls.ClientHelloInfo{ServerName: servingName})
			if err == nil {
				got[i] = c
			}
		})
	}
	wg.Wait()
	for _, c := range got {
		require.Same(t, got[0], c)
	}
	require.Equal(t, 1, ca.servingRecords(t))
}

func TestServingCert_RenewsAtHalfItsLifetime(t *testing.T) {
	ca := newTestCA(t)
	clk := &fakeClock{now: time.Now()}
	s := newServing(ca, clk)
	first := current(t, s)
	half := renewAt(first.Leaf)

	clk.Set(half.Add(-time.Nanosecond))
	require.Same(t, first, current(t, s), "still fresh just before half its lifetime")
	require.Equal(t, 1, ca.servingRecords(t))

	clk.Set(half)
	second := current(t, s)
	require.NotSame(t, first, second)
	require.NotEqual(t, first.Leaf.SerialNumber, second.Leaf.SerialNumber)
	require.False(t, first.Leaf.PublicKey.(*ecdsa.PublicKey).Equal(second.Leaf.PublicKey), "a renewal uses a new key")
	require.Same(t, second.Leaf, s.Leaf())
	require.Equal(t, 2, ca.servingRecords(t))
}

func TestServingCert_RenewsAtOnceWhenTheCAGenerationChanges(t *testing.T) {
	ca := newTestCA(t)
	s := newServing(ca, &fakeClock{now: time.Now()}) // the clock never moves
	first := current(t, s)
	old := ca.rt.Authority.Material()

	next := ca.nextGeneration(t)
	require.Same(t, first, current(t, s), "a minted but inactive generation changes nothing")

	ca.rt.Authority.SetMaterial(next)
	second := current(t, s)
	require.NotSame(t, first, second)
	require.NoError(t, second.Leaf.CheckSignatureFrom(next.Bundle.Cert), "issued by the new intermediate")
	require.Error(t, second.Leaf.CheckSignatureFrom(old.Bundle.Cert))
	require.Equal(t, next.Bundle.Cert.Raw, second.Certificate[1], "the chain carries the new intermediate")
	require.Same(t, second, current(t, s), "cached again under the new generation")
	require.Equal(t, 2, ca.servingRecords(t))

	srv, err := tlsconfig.Server(tlsconfig.Default, s.GetCertificate)
	require.NoError(t, err)
	r := handshake(t, srv, &tls.Config{RootCAs: ca.roots, ServerName: servingName})
	require.NoError(t, r.clientErr, "clients still verify against the same mesh root")
	require.NoError(t, r.serverErr)
	require.Equal(t, second.Leaf.Raw, r.client.PeerCertificates[0].Raw)
}

func TestServingCert_KeepsTheOldCertificateWhenRenewalFails(t *testing.T) {
	ca := newTestCA(t)
	clk := &fakeClock{now: time.Now()}
	s := newServing(ca, clk)
	first := current(t, s)

	// The record store goes away; renewal is due but cannot be recorded.
	require.NoError(t, ca.rt.Store.Close())
	clk.Set(renewAt(first.Leaf).Add(time.Minute))
	c, err := s.Current(context.Background())
	require.NoError(t, err, "a failed renewal is not a handshake failure")
	require.Same(t, first, c)
	c, err = s.GetCertificate(&tls.ClientHelloInfo{ServerName: servingName})
	require.NoError(t, err)
	require.Same(t, first, c, "every handshake retries and falls back")

	// Without an old certificate there is nothing to fall back to.
	fresh := newServing(ca, clk)
	c, err = fresh.Current(context.Background())
	require.Nil(t, c)
	require.Equal(t, caerr.Unavailable, caerr.CodeOf(err))
	require.Equal(t, "store_unavailable", caerr.ReasonOf(err))
	require.Nil(t, fresh.Leaf())
}

func TestServingCert_RetriesOnTheNextHandshakeOnceTheCARecovers(t *testing.T) {
	ca := newTestCA(t)
	clk := &fakeClock{now: time.Now()}
	s := newServing(ca, clk)
	first := current(t, s)
	m := ca.rt.Authority.Material()

	ca.rt.Authority.SetMaterial(nil) // no signing material: IssueServing fails
	clk.Set(renewAt(first.Leaf))
	require.Same(t, first, current(t, s))

	ca.rt.Authority.SetMaterial(m)
	second := current(t, s)
	require.NotSame(t, first, second, "renewal is retried, not postponed")
	require.Equal(t, 2, ca.servingRecords(t))
}

package crl_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"math/big"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/ca/store/boltstore"
	"github.com/meshca/meshca/crl"
)

// mgrPKI is a file root whose key meshca holds, a retired generation 1
// and the active generation 2, recorded in a real bbolt store.
type mgrPKI struct {
	path    string
	st      *boltstore.Store
	clk     *clocktesting.FakeClock
	root    *x509.Certificate
	rootKey crypto.Signer
	gens    map[uint64]*mgrGen
	active  uint64
}

type mgrGen struct {
	id   uint64
	cert *x509.Certificate
	key  crypto.Signer
}

func newMgrPKI(t testing.TB) *mgrPKI {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	p := &mgrPKI{path: filepath.Join(t.TempDir(), "meshca.db"), clk: clocktesting.NewFakeClock(now), rootKey: buildP256(t), gens: map[uint64]*mgrGen{}}
	var err error
	p.root, err = root.NewSelfSignedRoot(p.rootKey, "Manager Test Root", "meshca", 10*365*24*time.Hour, now)
	require.NoError(t, err)
	p.open(t)
	for range 2 {
		key := buildP256(t)
		cert := p.mintCert(t, "Manager Test Intermediate", key)
		g, err := p.st.AddGeneration(context.Background(), store.Generation{CertDER: cert.Raw, ChainDER: [][]byte{p.root.Raw}, KeyRef: "test", Source: "file-minted", CreatedAt: now})
		require.NoError(t, err)
		require.NoError(t, p.st.ActivateGeneration(context.Background(), g.ID, now))
		p.gens[g.ID] = &mgrGen{id: g.ID, cert: cert, key: key}
		p.active = g.ID
	}
	return p
}

// mintCert has the root sign an intermediate certificate named cn for
// key's public key, valid a year from the clock's now.
func (p *mgrPKI) mintCert(t testing.TB, cn string, key crypto.Signer) *x509.Certificate {
	t.Helper()
	cert, err := root.MintIntermediate(p.root, p.rootKey, key.Public(), root.IntermediateTemplate{
		CommonName: cn, Organization: "meshca", Lifetime: 365 * 24 * time.Hour,
	}, p.clk.Now())
	require.NoError(t, err)
	return cert
}

func (p *mgrPKI) open(t testing.TB) {
	t.Helper()
	st, err := boltstore.Open(p.path)
	require.NoError(t, err)
	p.st = st
	t.Cleanup(func() { st.Close() })
}

// reopen closes and reopens the store, as a restart does.
func (p *mgrPKI) reopen(t testing.TB) {
	t.Helper()
	require.NoError(t, p.st.Close())
	p.open(t)
}

func (p *mgrPKI) retired() uint64 { return p.active - 1 }

// issuers: the active generation, the retired one, then the root.
func (p *mgrPKI) issuers() []crl.Issuer {
	var out []crl.Issuer
	for _, id := range []uint64{p.active, p.retired()} {
		g := p.gens[id]
		out = append(out, crl.Issuer{Scope: crl.ScopeGeneration(id), Generation: id, Cert: g.cert, Signer: crl.Signer{Key: g.key}})
	}
	return append(out, crl.Issuer{Scope: crl.ScopeRoot, Cert: p.root, Signer: crl.Signer{Key: p.rootKey}})
}

// chain is cert-chain.pem: the active intermediate and the root.
func (p *mgrPKI) chain() []*x509.Certificate {
	return []*x509.Certificate{p.gens[p.active].cert, p.root}
}

// issue signs a leaf of id under generation gen, valid until notAfter, and
// records it.
func (p *mgrPKI) issue(t testing.TB, gen uint64, id string, notAfter time.Time) (*x509.Certificate, store.Issuance) {
	t.Helper()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	require.NoError(t, err)
	serial.SetBit(serial, 126, 1)
	now := p.clk.Now()
	g := p.gens[gen]
	tmpl := &x509.Certificate{
		SerialNumber: serial, NotBefore: now.Add(-2 * time.Minute), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, g.cert, buildP256(t).Public(), g.key)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	rec := store.Issuance{
		Serial: hex.EncodeToString(serial.Bytes()), Identity: id, NotBefore: c.NotBefore, NotAfter: c.NotAfter,
		Fingerprint: "00", Profile: "classical", Requester: "test", Generation: gen, IssuedAt: now,
	}
	require.NoError(t, p.st.PutIssuance(context.Background(), rec))
	return c, rec
}

func lastSeq(t testing.TB, st store.Revocations) uint64 {
	t.Helper()
	n, err := st.LastRevocationSeq(context.Background())
	require.NoError(t, err)
	return n
}

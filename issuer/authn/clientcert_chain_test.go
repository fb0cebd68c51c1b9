package authn_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"math/big"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/issuer/authn"
)

// miniCA is a root, and intermediates signed by it, for client certificate tests.
type miniCA struct {
	t       *testing.T
	rootKey *ecdsa.PrivateKey
	root    *x509.Certificate
}

func newMiniCA(t *testing.T) *miniCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "root"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	root, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &miniCA{t: t, rootKey: key, root: root}
}

// intermediate is a CA certificate named cn signed by the root key.
func (m *miniCA) intermediate(cn string, serial int64) (*x509.Certificate, *ecdsa.PrivateKey) {
	m.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(m.t, err)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(12 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}, m.root, key.Public(), m.rootKey)
	require.NoError(m.t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(m.t, err)
	return c, key
}

// leaf is a workload client certificate for sa signed by (ca, key).
func leafFor(t *testing.T, ca *x509.Certificate, key *ecdsa.PrivateKey, sa string, serial int64) *x509.Certificate {
	t.Helper()
	lk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	id, _ := url.Parse("spiffe://cluster.local/ns/default/sa/" + sa)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(serial), NotBefore: time.Now().Add(-time.Minute),
		NotAfter: time.Now().Add(time.Hour), URIs: []*url.URL{id}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, ca, lk.Public(), key)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return c
}

func recordOf(c *x509.Certificate) store.Issuance {
	sum := sha256.Sum256(c.Raw)
	serial := hex.EncodeToString(c.SerialNumber.Bytes())
	return store.Issuance{Serial: serial, Fingerprint: hex.EncodeToString(sum[:])}
}

func poolOf(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// A peer chain longer than MaxClientChainLength is refused before any
// signature check or store lookup, even when its leaf is good.
func TestClientCert_LongPeerChainIsRefusedBeforeVerification(t *testing.T) {
	m := newMiniCA(t)
	inter, ikey := m.intermediate("meshca", 2)
	leaf := leafFor(t, inter, ikey, "app", 10)
	records := &countingRecords{recs: map[string]store.Issuance{}}
	records.recs[recordOf(leaf).Serial] = recordOf(leaf)
	a := &authn.ClientCert{Trust: &pools{roots: poolOf(m.root), inters: poolOf(inter)}, Records: records, TrustDomain: "cluster.local"}

	chain := []*x509.Certificate{leaf}
	for i := range 10 {
		junk, _ := m.intermediate("meshca", int64(100+i))
		chain = append(chain, junk)
	}
	_, err := a.Authenticate(context.Background(), authn.Credentials{PeerCertificates: chain})
	require.Equal(t, authn.ReasonChainTooLong, authn.ReasonOf(err))
	require.Equal(t, 0, records.calls, "refused before the store is asked")

	// The same leaf with its intermediate (what istio-agent sends) passes.
	c, err := a.Authenticate(context.Background(), authn.Credentials{PeerCertificates: []*x509.Certificate{leaf, inter, m.root}})
	require.NoError(t, err)
	require.Equal(t, "spiffe://cluster.local/ns/default/sa/app", c.Identity.String())
}

// Only meshca's own intermediates issue client certificates it accepts:
// an intermediate the caller sends is never used to build the chain, even
// one signed by the mesh root key.
func TestClientCert_PeerSuppliedIntermediateIsNotTrusted(t *testing.T) {
	m := newMiniCA(t)
	inter, _ := m.intermediate("meshca", 2)
	rogue, rkey := m.intermediate("rogue", 3)
	leaf := leafFor(t, rogue, rkey, "app", 11)
	records := &countingRecords{recs: map[string]store.Issuance{recordOf(leaf).Serial: recordOf(leaf)}}
	a := &authn.ClientCert{Trust: &pools{roots: poolOf(m.root), inters: poolOf(inter)}, Records: records, TrustDomain: "cluster.local"}

	_, err := a.Authenticate(context.Background(), authn.Credentials{PeerCertificates: []*x509.Certificate{leaf, rogue}})
	require.Equal(t, "untrusted_certificate", authn.ReasonOf(err))
}

// After an intermediate rotation (the trust source switches to a new
// intermediate under the same root) the certificates of the previous
// intermediate, still valid, keep authenticating, and so do the new ones.
func TestClientCert_IntermediateRotation(t *testing.T) {
	m := newMiniCA(t)
	oldInter, oldKey := m.intermediate("meshca-1", 2)
	newInter, newKey := m.intermediate("meshca-2", 3)
	oldLeaf := leafFor(t, oldInter, oldKey, "old", 20)
	newLeaf := leafFor(t, newInter, newKey, "new", 21)
	trust := &pools{roots: poolOf(m.root), inters: poolOf(oldInter)}
	a := &authn.ClientCert{Trust: trust, TrustDomain: "cluster.local", VerifiedTTL: -1}

	_, err := a.Authenticate(context.Background(), authn.Credentials{PeerCertificates: []*x509.Certificate{oldLeaf, oldInter}})
	require.NoError(t, err)
	trust.inters = poolOf(newInter)
	c, err := a.Authenticate(context.Background(), authn.Credentials{PeerCertificates: []*x509.Certificate{oldLeaf, oldInter}})
	require.NoError(t, err, "a certificate of the previous intermediate still authenticates")
	require.Equal(t, "spiffe://cluster.local/ns/default/sa/old", c.Identity.String())
	c, err = a.Authenticate(context.Background(), authn.Credentials{PeerCertificates: []*x509.Certificate{newLeaf, newInter}})
	require.NoError(t, err)
	require.Equal(t, "spiffe://cluster.local/ns/default/sa/new", c.Identity.String())
}

// generationRecords is an issuance store that also keeps CA generations,
// as meshca's store does.
type generationRecords struct {
	countingRecords
	gens []store.Generation
}

func (g *generationRecords) ListGenerations(context.Context) ([]store.Generation, error) {
	return g.gens, nil
}
func (g *generationRecords) AddGeneration(context.Context, store.Generation) (store.Generation, error) {
	panic("not used")
}
func (g *generationRecords) ActivateGeneration(context.Context, uint64, time.Time) error {
	panic("not used")
}
func (g *generationRecords) MarkGenerationVerified(context.Context, uint64, time.Time) error {
	panic("not used")
}

// After a rotation and a restart (the process never saw the previous
// intermediate through its trust source), certificates of the retired
// generation, still valid, authenticate: the store's generations are
// meshca's intermediates too. A rogue intermediate stays refused.
func TestClientCert_RetiredGenerationFromTheStoreAfterRestart(t *testing.T) {
	m := newMiniCA(t)
	oldInter, oldKey := m.intermediate("meshca-1", 2)
	newInter, _ := m.intermediate("meshca-2", 3)
	rogue, rkey := m.intermediate("rogue", 4)
	oldLeaf := leafFor(t, oldInter, oldKey, "old", 30)
	rogueLeaf := leafFor(t, rogue, rkey, "rogue", 31)
	now := time.Now()
	records := &generationRecords{countingRecords: countingRecords{recs: map[string]store.Issuance{
		recordOf(oldLeaf).Serial: recordOf(oldLeaf), recordOf(rogueLeaf).Serial: recordOf(rogueLeaf)}},
		gens: []store.Generation{
			{ID: 1, CertDER: oldInter.Raw, ChainDER: [][]byte{m.root.Raw}, ActivatedAt: now.Add(-time.Hour), RetiredAt: now.Add(-time.Minute)},
			{ID: 2, CertDER: newInter.Raw, ChainDER: [][]byte{m.root.Raw}, ActivatedAt: now.Add(-time.Minute)},
		}}
	a := &authn.ClientCert{Trust: &pools{roots: poolOf(m.root), inters: poolOf(newInter)}, Records: records, TrustDomain: "cluster.local"}

	c, err := a.Authenticate(context.Background(), authn.Credentials{PeerCertificates: []*x509.Certificate{oldLeaf, oldInter}})
	require.NoError(t, err)
	require.Equal(t, "spiffe://cluster.local/ns/default/sa/old", c.Identity.String())
	_, err = a.Authenticate(context.Background(), authn.Credentials{PeerCertificates: []*x509.Certificate{rogueLeaf, rogue}})
	require.Equal(t, "untrusted_certificate", authn.ReasonOf(err))
}

// A stored generation of an Untrusted lineage (a plug-in cluster's
// intermediate, whose key is in that cluster's cacerts Secret) is not
// meshca's intermediate for client certificates, even for a leaf with a
// matching issuance record; the other lineages' generations still are.
func TestClientCert_UntrustedLineageIsNotTrusted(t *testing.T) {
	m := newMiniCA(t)
	cluster, ckey := m.intermediate("meshca cluster east", 2)
	def, dkey := m.intermediate("meshca-1", 3)
	cur, _ := m.intermediate("meshca-2", 4)
	clusterLeaf := leafFor(t, cluster, ckey, "east", 30)
	defLeaf := leafFor(t, def, dkey, "def", 31)
	now := time.Now()
	records := &generationRecords{countingRecords: countingRecords{recs: map[string]store.Issuance{
		recordOf(clusterLeaf).Serial: recordOf(clusterLeaf), recordOf(defLeaf).Serial: recordOf(defLeaf)}},
		gens: []store.Generation{
			{ID: 1, CertDER: cluster.Raw, ChainDER: [][]byte{m.root.Raw}, ActivatedAt: now.Add(-time.Hour), Signer: "cluster:east"},
			{ID: 2, CertDER: def.Raw, ChainDER: [][]byte{m.root.Raw}, ActivatedAt: now.Add(-time.Hour), RetiredAt: now.Add(-time.Minute)},
		}}
	a := &authn.ClientCert{Trust: &pools{roots: poolOf(m.root), inters: poolOf(cur)}, Records: records, TrustDomain: "cluster.local",
		Untrusted: func(l string) bool { return l == "cluster:east" }}
	_, err := a.Authenticate(context.Background(), authn.Credentials{PeerCertificates: []*x509.Certificate{clusterLeaf, cluster}})
	require.Equal(t, "untrusted_certificate", authn.ReasonOf(err))
	c, err := a.Authenticate(context.Background(), authn.Credentials{PeerCertificates: []*x509.Certificate{defLeaf, def}})
	require.NoError(t, err)
	require.Equal(t, "spiffe://cluster.local/ns/default/sa/def", c.Identity.String())
}

// A plug-in cluster's intermediate (lineage "cluster:<id>") is never
// meshca's intermediate for client certificates, also where the caller
// sets no Untrusted (the admin endpoint's TCP listener did not): its key
// is written into that cluster's cacerts Secret.
func TestClientCert_ClusterLineageIsNeverTrusted(t *testing.T) {
	m := newMiniCA(t)
	cluster, ckey := m.intermediate("meshca cluster east", 2)
	cur, _ := m.intermediate("meshca-2", 4)
	clusterLeaf := leafFor(t, cluster, ckey, "east", 30)
	now := time.Now()
	records := &generationRecords{countingRecords: countingRecords{recs: map[string]store.Issuance{
		recordOf(clusterLeaf).Serial: recordOf(clusterLeaf)}},
		gens: []store.Generation{
			{ID: 1, CertDER: cluster.Raw, ChainDER: [][]byte{m.root.Raw}, ActivatedAt: now.Add(-time.Hour), Signer: "cluster:east"},
		}}
	a := &authn.ClientCert{Trust: &pools{roots: poolOf(m.root), inters: poolOf(cur)}, Records: records, TrustDomain: "cluster.local"}
	_, err := a.Authenticate(context.Background(), authn.Credentials{PeerCertificates: []*x509.Certificate{clusterLeaf, cluster}})
	require.Equal(t, "untrusted_certificate", authn.ReasonOf(err))
}

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

type pools struct{ roots, inters *x509.CertPool }

func (p *pools) Roots() *x509.CertPool         { return p.roots }
func (p *pools) Intermediates() *x509.CertPool { return p.inters }

type revocations map[string]bool

func (r revocations) IsRevoked(_ context.Context, s string) (bool, error) { return r[s], nil }

func testClientCert(t *testing.T) (*x509.Certificate, *x509.CertPool) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	require.NoError(t, err)
	ca, _ := x509.ParseCertificate(der)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	id, _ := url.Parse("spiffe://cluster.local/ns/default/sa/app")
	der, err = x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(77), NotBefore: time.Now().Add(-time.Minute),
		NotAfter: time.Now().Add(time.Hour), URIs: []*url.URL{id}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, ca, key.Public(), caKey)
	require.NoError(t, err)
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return leaf, pool
}

func TestClientCert_RememberedCertificateIsStillCheckedForRevocationAndRootChange(t *testing.T) {
	leaf, pool := testClientCert(t)
	trust := &pools{roots: pool, inters: x509.NewCertPool()}
	revoked := revocations{}
	a := &authn.ClientCert{Trust: trust, Revocations: revoked, TrustDomain: "cluster.local"}
	creds := authn.Credentials{PeerCertificates: []*x509.Certificate{leaf}}

	c, err := a.Authenticate(context.Background(), creds)
	require.NoError(t, err)
	require.Equal(t, "spiffe://cluster.local/ns/default/sa/app", c.Identity.String())
	_, err = a.Authenticate(context.Background(), creds) // from memory
	require.NoError(t, err)

	revoked[hex.EncodeToString(leaf.SerialNumber.Bytes())] = true
	_, err = a.Authenticate(context.Background(), creds)
	require.Equal(t, "revoked_certificate", authn.ReasonOf(err), "revocation is checked even for a remembered certificate")
	delete(revoked, hex.EncodeToString(leaf.SerialNumber.Bytes()))

	// The mesh roots rotate to a set without this CA: the memory does not apply.
	_, other := testClientCert(t)
	trust.roots = other
	_, err = a.Authenticate(context.Background(), creds)
	require.Equal(t, "untrusted_certificate", authn.ReasonOf(err))
}

// countingRecords answers GetIssuance for the certificates it knows and
// counts the calls (a call means the certificate was not remembered).
type countingRecords struct {
	store.Issuances
	recs  map[string]store.Issuance
	calls int
}

func (r *countingRecords) GetIssuance(_ context.Context, serial string) (store.Issuance, error) {
	r.calls++
	rec, ok := r.recs[serial]
	if !ok {
		return store.Issuance{}, store.ErrNotFound
	}
	return rec, nil
}

func TestClientCert_FullMemoryForgetsTheLeastRecentlyUsedCertificateOnly(t *testing.T) {
	ca, caKey := throwawayCA(t)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	records := &countingRecords{recs: map[string]store.Issuance{}}
	creds := map[string]authn.Credentials{}
	for i, name := range []string{"a", "b", "c"} {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		id, _ := url.Parse("spiffe://cluster.local/ns/default/sa/" + name)
		der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(int64(100 + i)), NotBefore: time.Now().Add(-time.Minute),
			NotAfter: time.Now().Add(time.Hour), URIs: []*url.URL{id}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, ca, key.Public(), caKey)
		require.NoError(t, err)
		leaf, err := x509.ParseCertificate(der)
		require.NoError(t, err)
		sum := sha256.Sum256(der)
		serial := hex.EncodeToString(leaf.SerialNumber.Bytes())
		records.recs[serial] = store.Issuance{Serial: serial, Fingerprint: hex.EncodeToString(sum[:])}
		creds[name] = authn.Credentials{PeerCertificates: []*x509.Certificate{leaf}}
	}
	a := &authn.ClientCert{Trust: &pools{roots: pool, inters: x509.NewCertPool()}, Records: records, TrustDomain: "cluster.local", VerifiedSize: 2}
	for _, step := range []struct {
		name  string
		calls int
	}{
		{"a", 1}, {"b", 2}, // both remembered
		{"a", 2}, // from memory; a is now the most recently used
		{"c", 3}, // full: b, the least recently used, is forgotten
		{"a", 3}, // a was kept
		{"c", 3}, // and c
		{"b", 4}, // b is verified again
	} {
		c, err := a.Authenticate(context.Background(), creds[step.name])
		require.NoError(t, err)
		require.Equal(t, "spiffe://cluster.local/ns/default/sa/"+step.name, c.Identity.String())
		require.Equal(t, step.calls, records.calls, "store lookups after %s", step.name)
	}
}

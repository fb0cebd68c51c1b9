package vault

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// testCA is a locally made CA, standing in for what Vault could return.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return k
}

func issue(t *testing.T, tmpl *x509.Certificate, parent *testCA, pub crypto.PublicKey, self *ecdsa.PrivateKey) *x509.Certificate {
	t.Helper()
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	parentCert, parentKey := tmpl, self
	if parent != nil {
		parentCert, parentKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parentCert, pub, parentKey)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return c
}

func newTestRoot(t *testing.T, name string, now time.Time, life time.Duration) *testCA {
	k := newTestKey(t)
	return &testCA{key: k, cert: issue(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: name}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(life),
		BasicConstraintsValid: true, IsCA: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, nil, k.Public(), k)}
}

func TestCheckIntermediate_RejectsEveryPolicyViolationWithAClearReason(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	root := newTestRoot(t, "Vault Root", now, 30*24*time.Hour)
	other := newTestRoot(t, "Other Root", now, 30*24*time.Hour)
	csrKey := newTestKey(t)
	ttl := 7 * 24 * time.Hour

	// good is what Vault returns for sign-intermediate with max_path_length=0.
	good := func() *x509.Certificate {
		return &x509.Certificate{
			Subject: pkix.Name{CommonName: "meshca intermediate"}, NotBefore: now.Add(-30 * time.Second), NotAfter: now.Add(ttl),
			BasicConstraintsValid: true, IsCA: true, MaxPathLen: 0, MaxPathLenZero: true,
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		}
	}
	for name, tc := range map[string]struct {
		modify    func(c *x509.Certificate)
		parent    *testCA
		pub       crypto.PublicKey
		ttl       time.Duration // default: ttl
		want      string        // "" means accepted
		truncated bool
	}{
		"as asked": {},
		"also digitalSignature": {modify: func(c *x509.Certificate) {
			c.KeyUsage |= x509.KeyUsageDigitalSignature
		}},
		"another key than the CSR's": {pub: newTestKey(t).Public(), want: "its public key is not the one in meshca's CSR"},
		"not a CA": {modify: func(c *x509.Certificate) {
			c.IsCA, c.MaxPathLenZero = false, false
		}, want: "is not a CA certificate"},
		"no cRLSign": {modify: func(c *x509.Certificate) {
			c.KeyUsage = x509.KeyUsageCertSign
		}, want: "lacks the cRLSign key usage"},
		"pathlen 1": {modify: func(c *x509.Certificate) {
			c.MaxPathLen, c.MaxPathLenZero = 1, false
		}, want: "path length constraint is 1, not 0"},
		"no pathlen": {modify: func(c *x509.Certificate) {
			c.MaxPathLen, c.MaxPathLenZero = -1, false
		}, want: "path length constraint is -1, not 0"},
		"signed by another root": {parent: other, want: `it does not chain to Vault's root "CN=Vault Root"`},
		"outlives the root": {modify: func(c *x509.Certificate) {
			c.NotAfter = root.cert.NotAfter.Add(time.Hour)
		}, want: `it outlives "CN=Vault Root"`},
		"capped by the mount's max TTL": {modify: func(c *x509.Certificate) {
			c.NotAfter = now.Add(72 * time.Hour)
		}, want: "the intermediate's lifetime was shortened by Vault to 72h0m0s (asked 168h0m0s)"},
		"cut at the root's expiry, asked for longer than the root lives": {modify: func(c *x509.Certificate) {
			c.NotAfter = root.cert.NotAfter
		}, ttl: 60 * 24 * time.Hour, truncated: true},
		"longer than asked": {modify: func(c *x509.Certificate) {
			c.NotAfter = now.Add(ttl + time.Hour)
		}, want: "longer than the 168h0m0s asked"},
		"starts in the future": {modify: func(c *x509.Certificate) {
			c.NotBefore = now.Add(time.Hour)
		}, want: "in the future (are Vault's and meshca's clocks in sync?)"},
		"within tolerance": {modify: func(c *x509.Certificate) {
			c.NotAfter = now.Add(ttl - 5*time.Minute)
		}},
	} {
		t.Run(name, func(t *testing.T) {
			tmpl := good()
			if tc.modify != nil {
				tc.modify(tmpl)
			}
			parent := root
			if tc.parent != nil {
				parent = tc.parent
			}
			cert := issue(t, tmpl, parent, csrKey.Public(), nil)
			pub := tc.pub
			if pub == nil {
				pub = csrKey.Public()
			}
			asked := ttl
			if tc.ttl != 0 {
				asked = tc.ttl
			}
			path, truncated, err := checkIntermediate(cert, []*x509.Certificate{parent.cert}, intermediatePolicy{
				mount: "pki", roots: []*x509.Certificate{root.cert}, vaultIssuer: root.cert, pub: pub, ttl: asked, requestedAt: now, tolerance: 10 * time.Minute,
			})
			if tc.want != "" {
				require.ErrorContains(t, err, tc.want)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.truncated, truncated)
			require.Equal(t, []*x509.Certificate{cert, root.cert}, path)
		})
	}
}

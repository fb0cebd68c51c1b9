package policy

import (
	"crypto/elliptic"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/caerr"
)

func TestLeafSubjectAndSANs_EmptySubjectAndOnlyTheAuthenticatedIdentity(t *testing.T) {
	// The CSR carries a subject and a SAN of its own; none of it is copied.
	csr := csrWith(t, func(c *x509.CertificateRequest) {
		c.Subject = pkix.Name{Organization: []string{"evil"}, CommonName: "x"}
		c.URIs = urls(mustURL(t, "spiffe://cluster.local/ns/kube-system/sa/admin"))
		c.DNSNames = []string{"a.example.com"}
		c.IPAddresses = []net.IP{net.ParseIP("10.0.0.1")}
	})
	tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: "stale"}}
	require.NoError(t, leafSubjectAndSANs{}.Modify(tmpl, &Request{Identity: workloadID(t), CSR: csr}, nil))
	require.Equal(t, pkix.Name{}, tmpl.Subject)
	require.Equal(t, []string{workloadID(t).String()}, []string{tmpl.URIs[0].String()})
	require.Len(t, tmpl.URIs, 1)
	require.Empty(t, tmpl.DNSNames)
	require.Empty(t, tmpl.IPAddresses)
	require.Empty(t, tmpl.EmailAddresses)
}

func TestLeafSubjectAndSANs_CopiesRuleAllowedDNSIPAndCN(t *testing.T) {
	rule, err := NewRule("gw", []string{"spiffe://cluster.local/ns/default/sa/bookinfo"}, []string{"*.example.com"}, []string{"10.0.0.0/8"}, true, 0)
	require.NoError(t, err)
	csr := csrWith(t, func(c *x509.CertificateRequest) {
		c.Subject = pkix.Name{Organization: []string{"dropped"}, CommonName: "a.example.com"}
		c.DNSNames = []string{"a.example.com", "b.example.com"}
		c.IPAddresses = []net.IP{net.ParseIP("10.0.0.1")}
	})
	tmpl := &x509.Certificate{}
	require.NoError(t, leafSubjectAndSANs{}.Modify(tmpl, &Request{Identity: workloadID(t), CSR: csr, Rule: rule}, nil))
	require.Equal(t, pkix.Name{CommonName: "a.example.com"}, tmpl.Subject)
	require.Equal(t, []string{"a.example.com", "b.example.com"}, tmpl.DNSNames)
	require.True(t, net.ParseIP("10.0.0.1").Equal(tmpl.IPAddresses[0]))
	require.Len(t, tmpl.URIs, 1)

	// The template owns its DNS slice: changing the CSR afterwards does not leak in.
	csr.DNSNames[0] = "changed.example.com"
	require.Equal(t, "a.example.com", tmpl.DNSNames[0])
}

func TestLeafUsages_KeyEnciphermentOnlyForRSA(t *testing.T) {
	tests := map[string]struct {
		csr  *x509.CertificateRequest
		want x509.KeyUsage
	}{
		"RSA":     {&x509.CertificateRequest{PublicKey: &rsa2048(t).PublicKey}, x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment},
		"ECDSA":   {&x509.CertificateRequest{PublicKey: &ecKey(t, elliptic.P256()).PublicKey}, x509.KeyUsageDigitalSignature},
		"Ed25519": {&x509.CertificateRequest{PublicKey: edKey(t).Public()}, x509.KeyUsageDigitalSignature},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			// Start from a template that asks for too much: the modifier must replace it.
			tmpl := &x509.Certificate{IsCA: true, KeyUsage: x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
			require.NoError(t, leafUsages{}.Modify(tmpl, &Request{CSR: tc.csr}, nil))
			require.Equal(t, tc.want, tmpl.KeyUsage)
			require.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, tmpl.ExtKeyUsage)
			require.True(t, tmpl.BasicConstraintsValid)
			require.False(t, tmpl.IsCA)
		})
	}
}

func TestValidity_BackdatesTwoMinutesAndAddsTTL(t *testing.T) {
	is := validIssuer(t)
	tmpl := &x509.Certificate{}
	v := validity{now: func() time.Time { return testNow }, ttl: 24 * time.Hour}
	require.NoError(t, v.Modify(tmpl, &Request{}, is.cert))
	require.Equal(t, testNow.Add(-2*time.Minute), tmpl.NotBefore)
	require.Equal(t, testNow.Add(24*time.Hour), tmpl.NotAfter)
}

func TestValidity_TruncatesToWholeSeconds(t *testing.T) {
	is := validIssuer(t)
	now := testNow.Add(700 * time.Millisecond)
	tmpl := &x509.Certificate{}
	require.NoError(t, validity{now: func() time.Time { return now }, ttl: time.Hour}.Modify(tmpl, &Request{}, is.cert))
	require.Equal(t, testNow.Add(-2*time.Minute), tmpl.NotBefore)
	require.Equal(t, testNow.Add(time.Hour), tmpl.NotAfter)
}

func TestValidity_ClampsToTheIssuerWindow(t *testing.T) {
	// The issuer started one minute ago and ends in one hour.
	is := newIssuer(t, testNow.Add(-time.Minute), testNow.Add(time.Hour))
	tmpl := &x509.Certificate{}
	require.NoError(t, validity{now: func() time.Time { return testNow }, ttl: 24 * time.Hour}.Modify(tmpl, &Request{}, is.cert))
	require.Equal(t, is.cert.NotBefore, tmpl.NotBefore)
	require.Equal(t, is.cert.NotAfter, tmpl.NotAfter)
}

func TestValidity_RefusesAnIssuerOutsideItsValidity(t *testing.T) {
	tests := map[string]struct {
		notBefore, notAfter time.Time
		reason              string
	}{
		"expired a second ago":       {testNow.Add(-time.Hour), testNow.Add(-time.Second), ReasonIssuerExpired},
		"expiring this very instant": {testNow.Add(-time.Hour), testNow, ReasonIssuerExpired},
		"not valid yet":              {testNow.Add(time.Second), testNow.Add(time.Hour), ReasonIssuerNotYetValid},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			is := newIssuer(t, tc.notBefore, tc.notAfter)
			tmpl := &x509.Certificate{}
			err := validity{now: func() time.Time { return testNow }, ttl: time.Hour}.Modify(tmpl, &Request{}, is.cert)
			requireCAErr(t, err, caerr.Unavailable, tc.reason)
			require.True(t, tmpl.NotAfter.IsZero())
		})
	}
}

func TestCRLDistribution_CopiesTheConfiguredURLs(t *testing.T) {
	cfg := []string{"http://crl.example.com/ca.crl", "https://crl2.example.com/ca.crl"}
	tmpl := &x509.Certificate{}
	require.NoError(t, crlDistribution{urls: cfg}.Modify(tmpl, &Request{}, nil))
	require.Equal(t, cfg, tmpl.CRLDistributionPoints)
	tmpl.CRLDistributionPoints[0] = "changed"
	require.Equal(t, "http://crl.example.com/ca.crl", cfg[0], "the template must not alias the configuration")

	empty := &x509.Certificate{}
	require.NoError(t, crlDistribution{}.Modify(empty, &Request{}, nil))
	require.Empty(t, empty.CRLDistributionPoints)
}

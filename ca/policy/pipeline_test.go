package policy

import (
	"bytes"
	"crypto"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/caerr"
)

const workload = "spiffe://cluster.local/ns/default/sa/bookinfo"

// intake is one request as a front door hands it over: CSR bytes, the
// authenticated identity and the requested TTL.
type intake struct {
	csr    []byte
	id     string
	ttl    time.Duration
	issuer issuer
}

// run does what every front door does: ParseCSR, then the policy pipeline.
func run(t *testing.T, e *Engine, in intake) (*x509.Certificate, *x509.CertificateRequest, error) {
	t.Helper()
	csr, err := ParseCSR(in.csr)
	if err != nil {
		return nil, nil, err
	}
	tmpl, err := e.Template(&Request{Identity: mustURL(t, in.id), CSR: csr, TTL: in.ttl}, in.issuer.cert)
	return tmpl, csr, err
}

func der(t testing.TB, mutate func(*x509.CertificateRequest)) []byte {
	t.Helper()
	tmpl := &x509.CertificateRequest{URIs: urls(mustURL(t, workload))}
	if mutate != nil {
		mutate(tmpl)
	}
	return csrDER(t, ecKey(t, elliptic.P256()), tmpl)
}

func TestEngine_RejectionTable(t *testing.T) {
	good := validIssuer(t)
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	require.NoError(t, err)
	validDER := der(t, nil)
	tampered := bytes.Clone(validDER)
	tampered[len(tampered)-1] ^= 0xff

	tests := map[string]struct {
		in     intake
		code   caerr.Code
		reason string
	}{
		"foreign SPIFFE ID in the CSR": {
			in: intake{csr: der(t, func(c *x509.CertificateRequest) {
				c.URIs = urls(mustURL(t, "spiffe://cluster.local/ns/kube-system/sa/admin"))
			})},
			code: caerr.InvalidArgument, reason: ReasonForeignIdentity,
		},
		"caller outside the trust domain": {
			in: intake{csr: der(t, func(c *x509.CertificateRequest) {
				c.URIs = urls(mustURL(t, "spiffe://evil.example/ns/default/sa/bookinfo"))
			}), id: "spiffe://evil.example/ns/default/sa/bookinfo"},
			code: caerr.InvalidArgument, reason: ReasonIdentityInvalid,
		},
		"DNS SAN": {
			in:   intake{csr: der(t, func(c *x509.CertificateRequest) { c.DNSNames = []string{"bookinfo.default.svc"} })},
			code: caerr.InvalidArgument, reason: ReasonDNSSAN,
		},
		"IP SAN": {
			in:   intake{csr: der(t, func(c *x509.CertificateRequest) { c.IPAddresses = []net.IP{net.ParseIP("10.0.0.7")} })},
			code: caerr.InvalidArgument, reason: ReasonIPSAN,
		},
		"email SAN": {
			in:   intake{csr: der(t, func(c *x509.CertificateRequest) { c.EmailAddresses = []string{"ops@example.com"} })},
			code: caerr.InvalidArgument, reason: ReasonEmailSAN,
		},
		"common name": {
			in:   intake{csr: der(t, func(c *x509.CertificateRequest) { c.Subject.CommonName = "bookinfo" })},
			code: caerr.InvalidArgument, reason: ReasonCommonName,
		},
		"basicConstraints CA:true": {
			in:   intake{csr: der(t, func(c *x509.CertificateRequest) { c.ExtraExtensions = []pkix.Extension{basicConstraintsExt(t, true)} })},
			code: caerr.InvalidArgument, reason: ReasonCARequest,
		},
		"keyCertSign usage": {
			in:   intake{csr: der(t, func(c *x509.CertificateRequest) { c.ExtraExtensions = []pkix.Extension{keyUsageExt(t, 0, 5)} })},
			code: caerr.InvalidArgument, reason: ReasonCARequest,
		},
		"bad CSR signature": {
			in:   intake{csr: pemCSR(tampered)},
			code: caerr.InvalidArgument, reason: ReasonCSRSignature,
		},
		"ECDSA P-224 key": {
			in:   intake{csr: csrDER(t, ecKey(t, elliptic.P224()), &x509.CertificateRequest{URIs: urls(mustURL(t, workload))})},
			code: caerr.InvalidArgument, reason: ReasonKeyType,
		},
		"ECDSA P-521 key": {
			in:   intake{csr: csrDER(t, ecKey(t, elliptic.P521()), &x509.CertificateRequest{URIs: urls(mustURL(t, workload))})},
			code: caerr.InvalidArgument, reason: ReasonKeyType,
		},
		"DSA key": {
			in:   intake{csr: dsaCSRDER(t)},
			code: caerr.InvalidArgument, reason: ReasonKeyType,
		},
		"RSA-1024 key": {
			in:   intake{csr: csrDER(t, rsa1024, &x509.CertificateRequest{URIs: urls(mustURL(t, workload))})},
			code: caerr.InvalidArgument, reason: ReasonKeyTooSmall,
		},
		"TTL above the maximum": {
			in:   intake{csr: validDER, ttl: 90*24*time.Hour + time.Second},
			code: caerr.InvalidArgument, reason: ReasonTTLTooLong,
		},
		"expired issuer": {
			in:   intake{csr: validDER, issuer: newIssuer(t, testNow.Add(-48*time.Hour), testNow.Add(-time.Hour))},
			code: caerr.Unavailable, reason: ReasonIssuerExpired,
		},
		"issuer not yet valid": {
			in:   intake{csr: validDER, issuer: newIssuer(t, testNow.Add(time.Hour), testNow.Add(48*time.Hour))},
			code: caerr.Unavailable, reason: ReasonIssuerNotYetValid,
		},
		"CSR over 64 KiB": {
			in:   intake{csr: append(pemCSR(validDER), bytes.Repeat([]byte(" "), MaxCSRSize)...)},
			code: caerr.InvalidArgument, reason: ReasonCSRTooLarge,
		},
		"PEM garbage": {
			in:   intake{csr: []byte("-----BEGIN CERTIFICATE REQUEST-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE REQUEST-----\n")},
			code: caerr.InvalidArgument, reason: ReasonCSRMalformed,
		},
		"PEM with trailing data": {
			in:   intake{csr: append(pemCSR(validDER), []byte("-----BEGIN NOTHING-----\n")...)},
			code: caerr.InvalidArgument, reason: ReasonCSRMalformed,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			in := tc.in
			if in.id == "" {
				in.id = workload
			}
			if in.issuer.cert == nil {
				in.issuer = good
			}
			tmpl, _, err := run(t, testEngine(), in)
			require.Nil(t, tmpl, "a refused request yields no template")
			requireCAErr(t, err, tc.code, tc.reason)
		})
	}
}

// requireWorkloadLeaf asserts every field of an Istio workload leaf as istiod
// issues it (security/pkg/pki/util GenCertFromCSR): empty subject, critical
// URI SAN, KeyUsage, EKU and validity.
func requireWorkloadLeaf(t *testing.T, is issuer, leaf *x509.Certificate, csr *x509.CertificateRequest, wantKU x509.KeyUsage, ttl time.Duration) {
	t.Helper()
	require.Equal(t, []byte{0x30, 0x00}, leaf.RawSubject, "the subject is an empty SEQUENCE")
	require.Equal(t, pkix.Name{}.String(), leaf.Subject.String())

	var san *pkix.Extension
	for i, ext := range leaf.Extensions {
		if ext.Id.Equal(oidSAN) {
			san = &leaf.Extensions[i]
		}
	}
	require.NotNil(t, san, "the leaf must carry a SAN extension")
	require.True(t, san.Critical, "with an empty subject the SAN extension must be critical")
	require.Len(t, leaf.URIs, 1)
	require.Equal(t, workload, leaf.URIs[0].String())
	require.Empty(t, leaf.DNSNames)
	require.Empty(t, leaf.IPAddresses)
	require.Empty(t, leaf.EmailAddresses)

	require.Equal(t, wantKU, leaf.KeyUsage)
	require.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, leaf.ExtKeyUsage)
	require.Empty(t, leaf.UnknownExtKeyUsage)
	require.True(t, leaf.BasicConstraintsValid)
	require.False(t, leaf.IsCA)

	require.Equal(t, 1, leaf.SerialNumber.Sign(), "serial must be positive")
	require.LessOrEqual(t, leaf.SerialNumber.BitLen(), 128)

	require.Equal(t, testNow.Add(-2*time.Minute), leaf.NotBefore.UTC())
	require.Equal(t, testNow.Add(ttl), leaf.NotAfter.UTC())

	require.Equal(t, csr.RawSubjectPublicKeyInfo, leaf.RawSubjectPublicKeyInfo, "only the CSR's public key is used")
	require.NotEmpty(t, leaf.SubjectKeyId)

	roots := x509.NewCertPool()
	roots.AddCert(is.cert)
	for _, eku := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: testNow, KeyUsages: []x509.ExtKeyUsage{eku}})
		require.NoError(t, err)
	}
}

func TestEngine_IssuesLeafForIstioAgentRSACSRWithEmptyOrganization(t *testing.T) {
	is := validIssuer(t)
	csr := istioAgentCSR(t, workload)
	// Precondition: this really is istio-agent's shape.
	require.Equal(t, []string{""}, csr.Subject.Organization)
	require.Equal(t, x509.RSA, csr.PublicKeyAlgorithm)
	require.True(t, csr.Extensions[0].Critical)

	tmpl, err := testEngine().Template(&Request{Identity: mustURL(t, workload), CSR: csr, TTL: 24 * time.Hour}, is.cert)
	require.NoError(t, err)
	leaf := is.sign(t, tmpl)
	requireWorkloadLeaf(t, is, leaf, csr, x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment, 24*time.Hour)
}

func TestEngine_IssuesLeafForZtunnelP256CSRWithNonCriticalSAN(t *testing.T) {
	is := validIssuer(t)
	csr := ztunnelCSR(t, workload)
	require.False(t, csr.Extensions[0].Critical)

	tmpl, err := testEngine().Template(&Request{Identity: mustURL(t, workload), CSR: csr, TTL: 24 * time.Hour}, is.cert)
	require.NoError(t, err)
	requireWorkloadLeaf(t, is, is.sign(t, tmpl), csr, x509.KeyUsageDigitalSignature, 24*time.Hour)
}

func TestEngine_IssuesLeafForEd25519AndP384CSRs(t *testing.T) {
	is := validIssuer(t)
	for name, key := range map[string]crypto.Signer{"Ed25519": edKey(t), "P-384": ecKey(t, elliptic.P384())} {
		t.Run(name, func(t *testing.T) {
			csr := parsedCSR(t, key, &x509.CertificateRequest{URIs: urls(mustURL(t, workload))})
			tmpl, err := testEngine().Template(&Request{Identity: mustURL(t, workload), CSR: csr, TTL: time.Hour}, is.cert)
			require.NoError(t, err)
			requireWorkloadLeaf(t, is, is.sign(t, tmpl), csr, x509.KeyUsageDigitalSignature, time.Hour)
		})
	}
}

func TestEngine_UsesDefaultTTLWhenTTLIsZeroOrNegative(t *testing.T) {
	is := validIssuer(t)
	for _, ttl := range []time.Duration{0, -time.Second, -48 * time.Hour} {
		csr := ztunnelCSR(t, workload)
		tmpl, err := testEngine().Template(&Request{Identity: mustURL(t, workload), CSR: csr, TTL: ttl}, is.cert)
		require.NoError(t, err, "TTL %s", ttl)
		require.Equal(t, testNow.Add(24*time.Hour), tmpl.NotAfter, "TTL %s", ttl)
	}
}

func TestEngine_AcceptsTTLEqualToMaximum(t *testing.T) {
	is := validIssuer(t)
	tmpl, err := testEngine().Template(&Request{Identity: mustURL(t, workload), CSR: ztunnelCSR(t, workload), TTL: 90 * 24 * time.Hour}, is.cert)
	require.NoError(t, err)
	require.Equal(t, testNow.Add(90*24*time.Hour), tmpl.NotAfter)
}

func TestEngine_ClampsNotAfterToTheIssuer(t *testing.T) {
	is := newIssuer(t, testNow.Add(-24*time.Hour), testNow.Add(3*time.Hour))
	csr := ztunnelCSR(t, workload)
	tmpl, err := testEngine().Template(&Request{Identity: mustURL(t, workload), CSR: csr, TTL: 24 * time.Hour}, is.cert)
	require.NoError(t, err)
	leaf := is.sign(t, tmpl)
	require.Equal(t, is.cert.NotAfter, leaf.NotAfter)
	require.Equal(t, testNow.Add(-2*time.Minute), leaf.NotBefore.UTC())
}

func TestEngine_AddsConfiguredCRLDistributionPoints(t *testing.T) {
	is := validIssuer(t)
	e := testEngine(func(o *Options) { o.CRLDistributionPoints = []string{"http://meshca.example/crl"} })
	tmpl, err := e.Template(&Request{Identity: mustURL(t, workload), CSR: ztunnelCSR(t, workload)}, is.cert)
	require.NoError(t, err)
	require.Equal(t, []string{"http://meshca.example/crl"}, is.sign(t, tmpl).CRLDistributionPoints)
}

func gatewayRule(t *testing.T, maxTTL time.Duration) *Rule {
	t.Helper()
	r, err := NewRule("gateways", []string{"spiffe://cluster.local/ns/istio-system/sa/*"}, []string{"*.example.com"}, []string{"10.0.0.0/8"}, false, maxTTL)
	require.NoError(t, err)
	return r
}

const gateway = "spiffe://cluster.local/ns/istio-system/sa/ingress"

func gatewayCSR(t *testing.T, dns ...string) *x509.CertificateRequest {
	t.Helper()
	return parsedCSR(t, ecKey(t, elliptic.P256()), &x509.CertificateRequest{URIs: urls(mustURL(t, gateway)), DNSNames: dns})
}

func TestEngine_NamedRuleAdmitsOneLabelUnderWildcard(t *testing.T) {
	is := validIssuer(t)
	e := testEngine(func(o *Options) { o.Rules = []*Rule{gatewayRule(t, 0)} })

	req := &Request{Identity: mustURL(t, gateway), CSR: gatewayCSR(t, "a.example.com")}
	tmpl, err := e.Template(req, is.cert)
	require.NoError(t, err)
	require.Equal(t, "gateways", req.Rule.Name)
	leaf := is.sign(t, tmpl)
	require.Equal(t, []string{"a.example.com"}, leaf.DNSNames)
	require.Equal(t, gateway, leaf.URIs[0].String())

	_, err = e.Template(&Request{Identity: mustURL(t, gateway), CSR: gatewayCSR(t, "a.b.example.com")}, is.cert)
	requireCAErr(t, err, caerr.InvalidArgument, ReasonDNSSAN)
}

func TestEngine_NamedRuleDoesNotApplyToOtherIdentities(t *testing.T) {
	is := validIssuer(t)
	e := testEngine(func(o *Options) { o.Rules = []*Rule{gatewayRule(t, 0)} })
	csr := csrWith(t, func(c *x509.CertificateRequest) { c.DNSNames = []string{"a.example.com"} })
	req := &Request{Identity: mustURL(t, workload), CSR: csr}
	_, err := e.Template(req, is.cert)
	requireCAErr(t, err, caerr.InvalidArgument, ReasonDNSSAN)
	require.Nil(t, req.Rule)
}

func TestEngine_FirstMatchingRuleWins(t *testing.T) {
	first, err := NewRule("first", []string{gateway}, nil, nil, false, 0)
	require.NoError(t, err)
	e := testEngine(func(o *Options) { o.Rules = []*Rule{first, gatewayRule(t, 0)} })
	req := &Request{Identity: mustURL(t, gateway), CSR: gatewayCSR(t, "a.example.com")}
	_, err = e.Template(req, validIssuer(t).cert)
	requireCAErr(t, err, caerr.InvalidArgument, ReasonDNSSAN)
	require.Equal(t, "first", req.Rule.Name)
}

func TestEngine_RuleMaxCertTTLOverridesTheGlobalMaximum(t *testing.T) {
	is := validIssuer(t)
	t.Run("longer than the global maximum", func(t *testing.T) {
		e := testEngine(func(o *Options) { o.Rules = []*Rule{gatewayRule(t, 200*24*time.Hour)} })
		tmpl, err := e.Template(&Request{Identity: mustURL(t, gateway), CSR: gatewayCSR(t), TTL: 200 * 24 * time.Hour}, is.cert)
		require.NoError(t, err)
		require.Equal(t, testNow.Add(200*24*time.Hour), tmpl.NotAfter)

		_, err = e.Template(&Request{Identity: mustURL(t, gateway), CSR: gatewayCSR(t), TTL: 201 * 24 * time.Hour}, is.cert)
		requireCAErr(t, err, caerr.InvalidArgument, ReasonTTLTooLong)
	})
	t.Run("shorter than the global maximum", func(t *testing.T) {
		e := testEngine(func(o *Options) { o.Rules = []*Rule{gatewayRule(t, time.Hour)} })
		_, err := e.Template(&Request{Identity: mustURL(t, gateway), CSR: gatewayCSR(t), TTL: 2 * time.Hour}, is.cert)
		requireCAErr(t, err, caerr.InvalidArgument, ReasonTTLTooLong)

		// Other identities keep the global maximum.
		_, err = e.Template(&Request{Identity: mustURL(t, workload), CSR: ztunnelCSR(t, workload), TTL: 2 * time.Hour}, is.cert)
		require.NoError(t, err)
	})
	t.Run("the default TTL never exceeds the rule's maximum", func(t *testing.T) {
		e := testEngine(func(o *Options) { o.Rules = []*Rule{gatewayRule(t, time.Hour)} })
		tmpl, err := e.Template(&Request{Identity: mustURL(t, gateway), CSR: gatewayCSR(t)}, is.cert)
		require.NoError(t, err)
		require.Equal(t, testNow.Add(time.Hour), tmpl.NotAfter)
	})
}

func TestEngine_SkipCSRIdentityStillIssuesToTheCaller(t *testing.T) {
	is := validIssuer(t)
	strict := testEngine()
	lenient := strict.WithSkipCSRIdentity()
	require.True(t, lenient.Options().SkipCSRIdentity)
	require.False(t, strict.Options().SkipCSRIdentity, "WithSkipCSRIdentity must not change the original engine")

	// A PodCertificateRequest stub: no SAN at all.
	stub := parsedCSR(t, ecKey(t, elliptic.P256()), &x509.CertificateRequest{})
	_, err := strict.Template(&Request{Identity: mustURL(t, workload), CSR: stub}, is.cert)
	requireCAErr(t, err, caerr.InvalidArgument, ReasonForeignIdentity)

	tmpl, err := lenient.Template(&Request{Identity: mustURL(t, workload), CSR: stub}, is.cert)
	require.NoError(t, err)
	require.Equal(t, workload, is.sign(t, tmpl).URIs[0].String())

	// The other checks still apply.
	_, err = lenient.Template(&Request{Identity: mustURL(t, workload), CSR: csrWith(t, func(c *x509.CertificateRequest) {
		c.URIs = nil
		c.DNSNames = []string{"x.example.com"}
	})}, is.cert)
	requireCAErr(t, err, caerr.InvalidArgument, ReasonDNSSAN)
}

func TestEngine_DefaultsToTheWallClock(t *testing.T) {
	now := time.Now()
	is := newIssuer(t, now.Add(-time.Hour), now.Add(time.Hour))
	e := New(Options{TrustDomain: testTrustDomain, DefaultTTL: 10 * time.Minute, MaxTTL: time.Hour})
	tmpl, err := e.Template(&Request{Identity: mustURL(t, workload), CSR: ztunnelCSR(t, workload)}, is.cert)
	after := time.Now()
	require.NoError(t, err)
	require.False(t, tmpl.NotBefore.Before(now.Add(-2*time.Minute-time.Second)))
	require.False(t, tmpl.NotBefore.After(after.Add(-2*time.Minute)))
}

// The leaf SKI is computed the way Go 1.26 and ca/certenc compute a CA's:
// the leftmost 160 bits of the SHA-256 of the subjectPublicKey bits.
func TestSubjectKeyID_IsTruncatedSHA256OfTheCSRPublicKeyBits(t *testing.T) {
	csr := ztunnelCSR(t, workload)
	tmpl := &x509.Certificate{}
	require.NoError(t, subjectKeyID{}.Modify(tmpl, &Request{CSR: csr}, nil))
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	_, err := asn1.Unmarshal(csr.RawSubjectPublicKeyInfo, &spki)
	require.NoError(t, err)
	require.Len(t, tmpl.SubjectKeyId, 20)
	sum := sha256.Sum256(spki.PublicKey.Bytes)
	require.Equal(t, sum[:20], tmpl.SubjectKeyId)

	bad := &x509.CertificateRequest{RawSubjectPublicKeyInfo: []byte{0x01, 0x02}}
	requireCAErr(t, subjectKeyID{}.Modify(&x509.Certificate{}, &Request{CSR: bad}, nil), caerr.InvalidArgument, ReasonCSRMalformed)
}

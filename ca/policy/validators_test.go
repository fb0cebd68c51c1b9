package policy

import (
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/caerr"
)

var (
	oidExtBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidExtKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
)

func basicConstraintsExt(t testing.TB, isCA bool) pkix.Extension {
	t.Helper()
	v, err := asn1.Marshal(struct {
		IsCA bool `asn1:"optional"`
	}{isCA})
	require.NoError(t, err)
	return pkix.Extension{Id: oidExtBasicConstraints, Critical: true, Value: v}
}

// keyUsageExt encodes a keyUsage extension with the given RFC 5280 bits
// (0 digitalSignature … 5 keyCertSign, 6 cRLSign).
func keyUsageExt(t testing.TB, bits ...int) pkix.Extension {
	t.Helper()
	var b [2]byte
	n := 0
	for _, bit := range bits {
		b[bit/8] |= 0x80 >> (bit % 8)
		n = max(n, bit+1)
	}
	v, err := asn1.Marshal(asn1.BitString{Bytes: b[:(n+7)/8], BitLength: n})
	require.NoError(t, err)
	return pkix.Extension{Id: oidExtKeyUsage, Critical: true, Value: v}
}

func TestSPIFFEIdentityValidator_AcceptsWorkloadIDInTrustDomain(t *testing.T) {
	v := spiffeIdentity{trustDomain: testTrustDomain}
	require.NoError(t, v.Validate(&Request{Identity: workloadID(t)}))
}

func TestSPIFFEIdentityValidator_RejectsIdentitiesThatAreNotMeshSPIFFEIDs(t *testing.T) {
	v := spiffeIdentity{trustDomain: testTrustDomain}
	tests := map[string]*url.URL{
		"no identity":          nil,
		"https scheme":         mustURL(t, "https://cluster.local/ns/default/sa/bookinfo"),
		"foreign trust domain": mustURL(t, "spiffe://evil.example/ns/default/sa/bookinfo"),
		"upper-case domain":    mustURL(t, "spiffe://Cluster.local/ns/default/sa/bookinfo"),
		"no path":              mustURL(t, "spiffe://cluster.local"),
		"root path":            mustURL(t, "spiffe://cluster.local/"),
		"empty path segment":   mustURL(t, "spiffe://cluster.local/ns//sa/bookinfo"),
		"query":                mustURL(t, "spiffe://cluster.local/ns/default/sa/bookinfo?x=1"),
		"fragment":             mustURL(t, "spiffe://cluster.local/ns/default/sa/bookinfo#frag"),
		"user info":            mustURL(t, "spiffe://admin@cluster.local/ns/default/sa/bookinfo"),
		"port":                 mustURL(t, "spiffe://cluster.local:443/ns/default/sa/bookinfo"),
		"opaque":               mustURL(t, "spiffe:cluster.local/ns/default/sa/bookinfo"),
	}
	for name, id := range tests {
		t.Run(name, func(t *testing.T) {
			requireCAErr(t, v.Validate(&Request{Identity: id}), caerr.InvalidArgument, ReasonIdentityInvalid)
		})
	}
}

func TestCSRIdentityValidator_AcceptsCSRWhoseOnlyURIIsTheCaller(t *testing.T) {
	req := &Request{Identity: workloadID(t), CSR: csrWith(t, nil)}
	require.NoError(t, csrIdentity{}.Validate(req))
}

func TestCSRIdentityValidator_RejectsCSRWithForeignSPIFFEID(t *testing.T) {
	other := mustURL(t, "spiffe://cluster.local/ns/kube-system/sa/admin")
	tests := map[string][]*url.URL{
		"foreign SPIFFE ID":          {other},
		"no URI SAN":                 nil,
		"caller plus a foreign ID":   {workloadID(t), other},
		"caller twice":               {workloadID(t), workloadID(t)},
		"caller in another domain":   {mustURL(t, "spiffe://evil.example/ns/default/sa/bookinfo")},
		"caller with trailing slash": {mustURL(t, "spiffe://cluster.local/ns/default/sa/bookinfo/")},
	}
	for name, uris := range tests {
		t.Run(name, func(t *testing.T) {
			csr := csrWith(t, func(c *x509.CertificateRequest) { c.URIs = uris })
			err := csrIdentity{}.Validate(&Request{Identity: workloadID(t), CSR: csr})
			requireCAErr(t, err, caerr.InvalidArgument, ReasonForeignIdentity)
		})
	}
}

func TestExtraSANsValidator_RejectsDNSIPAndEmailSANsWithoutARule(t *testing.T) {
	tests := map[string]struct {
		mutate func(*x509.CertificateRequest)
		reason string
	}{
		"DNS SAN":   {func(c *x509.CertificateRequest) { c.DNSNames = []string{"bookinfo.default.svc"} }, ReasonDNSSAN},
		"IP SAN":    {func(c *x509.CertificateRequest) { c.IPAddresses = []net.IP{net.ParseIP("10.0.0.1")} }, ReasonIPSAN},
		"IPv6 SAN":  {func(c *x509.CertificateRequest) { c.IPAddresses = []net.IP{net.ParseIP("fd00::1")} }, ReasonIPSAN},
		"email SAN": {func(c *x509.CertificateRequest) { c.EmailAddresses = []string{"a@example.com"} }, ReasonEmailSAN},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			req := &Request{Identity: workloadID(t), CSR: csrWith(t, tc.mutate)}
			requireCAErr(t, extraSANs{}.Validate(req), caerr.InvalidArgument, tc.reason)
		})
	}
}

func TestExtraSANsValidator_AllowsOnlyWhatTheRuleLists(t *testing.T) {
	rule, err := NewRule("gateways", []string{"spiffe://cluster.local/ns/default/sa/bookinfo"},
		[]string{"*.example.com", "gw.example.org"}, []string{"10.0.0.0/8"}, false, 0)
	require.NoError(t, err)
	v := extraSANs{rule: rule}
	tests := map[string]struct {
		mutate func(*x509.CertificateRequest)
		reason string // "" means accepted
	}{
		"wildcard DNS one label":   {func(c *x509.CertificateRequest) { c.DNSNames = []string{"a.example.com"} }, ""},
		"exact DNS":                {func(c *x509.CertificateRequest) { c.DNSNames = []string{"gw.example.org"} }, ""},
		"wildcard DNS two labels":  {func(c *x509.CertificateRequest) { c.DNSNames = []string{"a.b.example.com"} }, ReasonDNSSAN},
		"wildcard base domain":     {func(c *x509.CertificateRequest) { c.DNSNames = []string{"example.com"} }, ReasonDNSSAN},
		"one allowed, one not":     {func(c *x509.CertificateRequest) { c.DNSNames = []string{"a.example.com", "evil.com"} }, ReasonDNSSAN},
		"IP inside the range":      {func(c *x509.CertificateRequest) { c.IPAddresses = []net.IP{net.ParseIP("10.1.2.3")} }, ""},
		"IP outside the range":     {func(c *x509.CertificateRequest) { c.IPAddresses = []net.IP{net.ParseIP("192.168.0.1")} }, ReasonIPSAN},
		"email even with the rule": {func(c *x509.CertificateRequest) { c.EmailAddresses = []string{"a@example.com"} }, ReasonEmailSAN},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := v.Validate(&Request{Identity: workloadID(t), CSR: csrWith(t, tc.mutate)})
			if tc.reason == "" {
				require.NoError(t, err)
				return
			}
			requireCAErr(t, err, caerr.InvalidArgument, tc.reason)
		})
	}
}

func TestCommonNameValidator(t *testing.T) {
	allowCN, err := NewRule("gw", []string{"spiffe://cluster.local/ns/default/sa/bookinfo"}, []string{"*.example.com"}, nil, true, 0)
	require.NoError(t, err)
	noCN, err := NewRule("gw", []string{"spiffe://cluster.local/ns/default/sa/bookinfo"}, []string{"*.example.com"}, nil, false, 0)
	require.NoError(t, err)
	tests := map[string]struct {
		rule   *Rule
		cn     string
		reject bool
	}{
		"no CN, no rule":                      {nil, "", false},
		"CN without a rule":                   {nil, "bookinfo", true},
		"CN equal to an allowed DNS name":     {allowCN, "a.example.com", false},
		"CN that is no allowed DNS name":      {allowCN, "a.b.example.com", true},
		"CN when the rule does not allow CNs": {noCN, "a.example.com", true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			csr := csrWith(t, func(c *x509.CertificateRequest) { c.Subject.CommonName = tc.cn })
			err := commonName{rule: tc.rule}.Validate(&Request{Identity: workloadID(t), CSR: csr})
			if !tc.reject {
				require.NoError(t, err)
				return
			}
			requireCAErr(t, err, caerr.InvalidArgument, ReasonCommonName)
		})
	}
}

func TestNotCAValidator(t *testing.T) {
	tests := map[string]struct {
		ext    pkix.Extension
		reason string // "" means accepted
	}{
		"basicConstraints CA:true":  {basicConstraintsExt(t, true), ReasonCARequest},
		"basicConstraints CA:false": {basicConstraintsExt(t, false), ""},
		"keyCertSign usage":         {keyUsageExt(t, 0, 5), ReasonCARequest},
		"cRLSign usage":             {keyUsageExt(t, 0, 6), ReasonCARequest},
		"digitalSignature usage":    {keyUsageExt(t, 0), ""},
		"digitalSignature+keyEnc":   {keyUsageExt(t, 0, 2), ""},
		"malformed basicConstraints": {
			pkix.Extension{Id: oidExtBasicConstraints, Value: []byte{0x04, 0x01, 0x00}}, ReasonCSRMalformed,
		},
		"malformed keyUsage": {
			pkix.Extension{Id: oidExtKeyUsage, Value: []byte{0x30, 0x00}}, ReasonCSRMalformed,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			csr := csrWith(t, func(c *x509.CertificateRequest) { c.ExtraExtensions = []pkix.Extension{tc.ext} })
			err := notCA{}.Validate(&Request{Identity: workloadID(t), CSR: csr})
			if tc.reason == "" {
				require.NoError(t, err)
				return
			}
			requireCAErr(t, err, caerr.InvalidArgument, tc.reason)
		})
	}
}

func TestKeyTypeValidator(t *testing.T) {
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	require.NoError(t, err)
	huge := new(big.Int).Lsh(big.NewInt(1), 8200)
	dsaCSR, err := x509.ParseCertificateRequest(dsaCSRDER(t))
	require.NoError(t, err)
	tests := map[string]struct {
		csr    *x509.CertificateRequest
		reason string // "" means accepted
	}{
		"RSA-2048":    {&x509.CertificateRequest{PublicKey: &rsa2048(t).PublicKey}, ""},
		"RSA-1024":    {&x509.CertificateRequest{PublicKey: &rsa1024.PublicKey}, ReasonKeyTooSmall},
		"RSA-8200":    {&x509.CertificateRequest{PublicKey: &rsa.PublicKey{N: huge.Add(huge, big.NewInt(1)), E: 65537}}, ReasonKeyType},
		"ECDSA P-224": {&x509.CertificateRequest{PublicKey: &ecKey(t, elliptic.P224()).PublicKey}, ReasonKeyType},
		"ECDSA P-256": {&x509.CertificateRequest{PublicKey: &ecKey(t, elliptic.P256()).PublicKey}, ""},
		"ECDSA P-384": {&x509.CertificateRequest{PublicKey: &ecKey(t, elliptic.P384()).PublicKey}, ""},
		"ECDSA P-521": {&x509.CertificateRequest{PublicKey: &ecKey(t, elliptic.P521()).PublicKey}, ReasonKeyType},
		"Ed25519":     {&x509.CertificateRequest{PublicKey: edKey(t).Public()}, ""},
		"DSA":         {dsaCSR, ReasonKeyType},
		"no key":      {&x509.CertificateRequest{}, ReasonKeyType},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := keyType{}.Validate(&Request{Identity: workloadID(t), CSR: tc.csr})
			if tc.reason == "" {
				require.NoError(t, err)
				return
			}
			requireCAErr(t, err, caerr.InvalidArgument, tc.reason)
		})
	}
}

func TestTTLValidator_RejectsAboveMaximumAndNeverClamps(t *testing.T) {
	v := ttl{max: 90 * 24 * time.Hour}
	for _, ok := range []time.Duration{-time.Second, 0, time.Hour, 90 * 24 * time.Hour} {
		require.NoError(t, v.Validate(&Request{TTL: ok}), "TTL %s", ok)
	}
	req := &Request{TTL: 90*24*time.Hour + time.Second}
	requireCAErr(t, v.Validate(req), caerr.InvalidArgument, ReasonTTLTooLong)
	require.Equal(t, 90*24*time.Hour+time.Second, req.TTL, "the request is rejected, not clamped")
}

func TestValidatorFunc_AdaptsAFunction(t *testing.T) {
	want := caerr.New(caerr.PermissionDenied, "custom", "no")
	var got *Request
	v := ValidatorFunc(func(r *Request) error { got = r; return want })
	req := &Request{TTL: time.Minute}
	require.Same(t, want, v.Validate(req))
	require.Same(t, req, got)
}

func TestSPIFFEIdentity_RejectsEmptyAndRelativePathSegments(t *testing.T) {
	for _, id := range []string{
		"spiffe://cluster.local/ns/default/sa/app/",
		"spiffe://cluster.local/ns//sa/app",
		"spiffe://cluster.local/ns/./sa/app",
		"spiffe://cluster.local/ns/../sa/app",
	} {
		u, err := url.Parse(id)
		require.NoError(t, err)
		err = spiffeIdentity{"cluster.local"}.Validate(&Request{Identity: u})
		require.Equal(t, ReasonIdentityInvalid, caerr.ReasonOf(err), id)
	}
}

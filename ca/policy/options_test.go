package policy

import (
	"crypto"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/caerr"
)

var (
	oidEKU = asn1.ObjectIdentifier{2, 5, 29, 37}

	// DER of the extension values (RFC 5280 §4.2.1.3, §4.2.1.12).
	kuDigitalSignature   = []byte{0x03, 0x02, 0x07, 0x80}
	kuDigitalSigKeyEncip = []byte{0x03, 0x02, 0x05, 0xa0}
	ekuServerAndClient   = []byte{0x30, 0x14, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02}
	ekuServerAuthOnly    = []byte{0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01}
	allFourIstiodUsages  = []Usage{UsageDigitalSignature, UsageKeyEncipherment, UsageServerAuth, UsageClientAuth}
)

// extValue returns the value of the extension oid in c, or nil.
func extValue(c *x509.Certificate, oid asn1.ObjectIdentifier) []byte {
	for _, e := range c.Extensions {
		if e.Id.Equal(oid) {
			return e.Value
		}
	}
	return nil
}

// reasons lists the reasons of adjustments, in order.
func reasons(as []Adjustment) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.Reason)
	}
	return out
}

func TestWithUsages_GrantsWhatIsValidForTheKeyAndReportsTheDrop(t *testing.T) {
	is := validIssuer(t)
	tests := map[string]struct {
		key     crypto.Signer
		usages  []Usage
		ku, eku []byte
		report  []string
	}{
		"istiod's four usages, RSA key: all granted": {
			key: rsa2048(t), usages: allFourIstiodUsages,
			ku: kuDigitalSigKeyEncip, eku: ekuServerAndClient,
		},
		"istiod's four usages, P-256 key: keyEncipherment dropped (RFC 5480 §3)": {
			key: ecKey(t, elliptic.P256()), usages: allFourIstiodUsages,
			ku: kuDigitalSignature, eku: ekuServerAndClient, report: []string{ReasonKeyEnciphermentDropped},
		},
		"istiod's four usages, Ed25519 key: keyEncipherment dropped (RFC 8410 §5)": {
			key: edKey(t), usages: allFourIstiodUsages,
			ku: kuDigitalSignature, eku: ekuServerAndClient, report: []string{ReasonKeyEnciphermentDropped},
		},
		"server auth only": {
			key: ecKey(t, elliptic.P256()), usages: []Usage{UsageDigitalSignature, UsageServerAuth},
			ku: kuDigitalSignature, eku: ekuServerAuthOnly,
		},
		"cert-manager's default (digital signature, key encipherment), RSA: no EKU": {
			key: rsa2048(t), usages: []Usage{UsageDigitalSignature, UsageKeyEncipherment},
			ku: kuDigitalSigKeyEncip,
		},
		"duplicates count once": {
			key: rsa2048(t), usages: []Usage{UsageServerAuth, UsageServerAuth, UsageKeyEncipherment},
			ku: kuDigitalSigKeyEncip, eku: ekuServerAuthOnly,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			req := &Request{
				Identity: mustURL(t, workload),
				CSR:      parsedCSR(t, tc.key, &x509.CertificateRequest{URIs: urls(mustURL(t, workload))}),
				Extra:    []SignOption{WithUsages(tc.usages...)},
			}
			tmpl, err := testEngine().Template(req, is.cert)
			require.NoError(t, err)
			cert := is.sign(t, tmpl)
			require.Equal(t, tc.ku, extValue(cert, oidExtKeyUsage), "keyUsage extension value")
			require.Equal(t, tc.eku, extValue(cert, oidEKU), "extKeyUsage extension value")
			require.False(t, cert.IsCA)
			require.Equal(t, tc.report, reasons(req.Adjustments()))
			if len(tc.report) > 0 {
				require.Contains(t, req.Adjustments()[0].Message, "keyEncipherment")
			}
		})
	}
}

func TestWithUsages_RefusesUsagesALeafMustNotHave(t *testing.T) {
	is := validIssuer(t)
	for _, u := range []Usage{"cert sign", "crl sign", "any", "code signing", "email protection", "no such usage", "server auth\n"} {
		t.Run(string(u), func(t *testing.T) {
			req := &Request{Identity: mustURL(t, workload), CSR: ztunnelCSR(t, workload), Extra: []SignOption{WithUsages(UsageServerAuth, u)}}
			_, err := testEngine().Template(req, is.cert)
			requireCAErr(t, err, caerr.InvalidArgument, ReasonUsageNotAllowed)
			require.NotContains(t, err.Error(), "\n", "caller input is quoted")
		})
	}
}

func TestWithDuration_IsClampedByPolicyAndReported(t *testing.T) {
	is := validIssuer(t)
	gateway := "spiffe://cluster.local/ns/istio-system/sa/gateway"
	rule, err := NewRule("gateway", []string{gateway}, nil, nil, false, 2*time.Hour)
	require.NoError(t, err)
	e := testEngine(func(o *Options) { o.Rules = []*Rule{rule} }) // default 24 h, max 90 d

	tests := map[string]struct {
		id       string
		d        Duration
		notAfter time.Time
		report   []string
	}{
		"within policy": {
			id: workload, d: Duration{Requested: 48 * time.Hour}, notAfter: testNow.Add(48 * time.Hour),
		},
		"zero means the policy default": {
			id: workload, d: Duration{}, notAfter: testNow.Add(24 * time.Hour),
		},
		"above the global maximum: clamped, not refused": {
			id: workload, d: Duration{Requested: 365 * 24 * time.Hour}, notAfter: testNow.Add(90 * 24 * time.Hour),
			report: []string{ReasonDurationClamped},
		},
		"above the rule's maximum: clamped to it": {
			id: gateway, d: Duration{Requested: 24 * time.Hour}, notAfter: testNow.Add(2 * time.Hour),
			report: []string{ReasonDurationClamped},
		},
		"the requester's own cap (maxExpirationSeconds) below the default": {
			id: workload, d: Duration{Max: 3 * time.Hour, Min: time.Hour}, notAfter: testNow.Add(3 * time.Hour),
		},
		"a minimum above the policy default raises the default": {
			id: workload, d: Duration{Min: 48 * time.Hour}, notAfter: testNow.Add(48 * time.Hour),
		},
		"the requester's cap above the policy maximum: the policy wins": {
			id: gateway, d: Duration{Max: 24 * time.Hour}, notAfter: testNow.Add(2 * time.Hour),
			report: []string{ReasonDurationClamped},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			csr := csrWith(t, func(c *x509.CertificateRequest) { c.URIs = urls(mustURL(t, tc.id)) })
			req := &Request{Identity: mustURL(t, tc.id), CSR: csr, Extra: []SignOption{WithDuration(tc.d)}}
			tmpl, err := e.Template(req, is.cert)
			require.NoError(t, err)
			require.Equal(t, tc.notAfter, tmpl.NotAfter)
			require.Equal(t, testNow.Add(-Backdate), tmpl.NotBefore)
			require.Equal(t, tc.report, reasons(req.Adjustments()))
		})
	}

	t.Run("clamped to the issuer's notAfter and reported", func(t *testing.T) {
		short := newIssuer(t, testNow.Add(-time.Hour), testNow.Add(5*time.Hour))
		req := &Request{Identity: mustURL(t, workload), CSR: ztunnelCSR(t, workload), Extra: []SignOption{WithDuration(Duration{Requested: 10 * time.Hour})}}
		tmpl, err := e.Template(req, short.cert)
		require.NoError(t, err)
		require.Equal(t, testNow.Add(5*time.Hour), tmpl.NotAfter)
		require.Equal(t, []string{ReasonDurationClampedToIssuer}, reasons(req.Adjustments()))
	})

	refusals := map[string]struct {
		id     string
		d      Duration
		issuer issuer
		code   caerr.Code
		reason string
	}{
		"negative": {id: workload, d: Duration{Requested: -time.Second}, issuer: is, code: caerr.InvalidArgument, reason: ReasonDurationInvalid},
		"below the requester's minimum": {
			id: workload, d: Duration{Requested: 30 * time.Minute, Min: time.Hour}, issuer: is, code: caerr.InvalidArgument, reason: ReasonDurationInvalid,
		},
		"the policy maximum is below the requester's minimum": {
			id: gateway, d: Duration{Min: 3 * time.Hour}, issuer: is, code: caerr.InvalidArgument, reason: ReasonTTLTooShort,
		},
		"the issuer expires before the requester's minimum": {
			id: workload, d: Duration{Min: time.Hour}, issuer: newIssuer(t, testNow.Add(-time.Hour), testNow.Add(30*time.Minute)),
			code: caerr.Unavailable, reason: ReasonIssuerExpiresTooSoon,
		},
	}
	for name, tc := range refusals {
		t.Run("refused: "+name, func(t *testing.T) {
			csr := csrWith(t, func(c *x509.CertificateRequest) { c.URIs = urls(mustURL(t, tc.id)) })
			_, err := e.Template(&Request{Identity: mustURL(t, tc.id), CSR: csr, Extra: []SignOption{WithDuration(tc.d)}}, tc.issuer.cert)
			requireCAErr(t, err, tc.code, tc.reason)
		})
	}

	t.Run("refused: both a TTL and a duration", func(t *testing.T) {
		_, err := e.Template(&Request{Identity: mustURL(t, workload), CSR: ztunnelCSR(t, workload), TTL: time.Hour,
			Extra: []SignOption{WithDuration(Duration{Requested: time.Hour})}}, is.cert)
		requireCAErr(t, err, caerr.InvalidArgument, ReasonDurationInvalid)
	})
}

func TestRequestCA_IsRefused(t *testing.T) {
	is := validIssuer(t)
	t.Run("the requester's issuer does not allow CA certificates", func(t *testing.T) {
		_, err := testEngine().Template(&Request{Identity: mustURL(t, workload), CSR: ztunnelCSR(t, workload), Extra: []SignOption{RequestCA(false)}}, is.cert)
		requireCAErr(t, err, caerr.PermissionDenied, ReasonCANotAllowed)
	})
	t.Run("the issuer allows them, the policy still decides", func(t *testing.T) {
		_, err := testEngine().Template(&Request{Identity: mustURL(t, workload), CSR: ztunnelCSR(t, workload), Extra: []SignOption{RequestCA(true)}}, is.cert)
		requireCAErr(t, err, caerr.PermissionDenied, ReasonCARequest)
		require.Contains(t, err.Error(), "pathLenConstraint")
	})
}

func TestWithValidator_RunsAfterThePolicyAndOnlyRefuses(t *testing.T) {
	is := validIssuer(t)
	var seen *Request
	refuse := WithValidator(ValidatorFunc(func(r *Request) error {
		seen = r
		return caerr.New(caerr.PermissionDenied, "requester_not_allowed", "requester is not allowed")
	}))
	req := &Request{Identity: mustURL(t, workload), CSR: ztunnelCSR(t, workload), Extra: []SignOption{refuse}}
	_, err := testEngine().Template(req, is.cert)
	requireCAErr(t, err, caerr.PermissionDenied, "requester_not_allowed")
	require.Same(t, req, seen)

	// The policy's own checks run first: a foreign identity never reaches the front door's validator.
	seen = nil
	_, err = testEngine().Template(&Request{Identity: mustURL(t, workload), CSR: ztunnelCSR(t, "spiffe://cluster.local/ns/x/sa/y"), Extra: []SignOption{refuse}}, is.cert)
	requireCAErr(t, err, caerr.InvalidArgument, ReasonForeignIdentity)
	require.Nil(t, seen)

	// A plain error is still a *caerr.Error.
	plain := WithValidator(ValidatorFunc(func(*Request) error { return errors.New("spec.isCA contradicts the CSR") }))
	_, err = testEngine().Template(&Request{Identity: mustURL(t, workload), CSR: ztunnelCSR(t, workload), Extra: []SignOption{plain}}, is.cert)
	requireCAErr(t, err, caerr.InvalidArgument, ReasonRequestRefused)
	require.Contains(t, err.Error(), "spec.isCA contradicts the CSR")
}

func TestPublicKeyRequest_IssuesToTheCallerWithThatKey(t *testing.T) {
	is := validIssuer(t)
	for name, key := range map[string]crypto.Signer{"P-256": ecKey(t, elliptic.P256()), "RSA-2048": rsa2048(t), "Ed25519": edKey(t)} {
		t.Run(name, func(t *testing.T) {
			req := &Request{Identity: mustURL(t, workload), PublicKey: key.Public(), Extra: []SignOption{WithDuration(Duration{Max: 2 * time.Hour, Min: time.Hour})}}
			tmpl, err := testEngine().Template(req, is.cert)
			require.NoError(t, err)
			cert := is.sign(t, tmpl)
			want, err := x509.MarshalPKIXPublicKey(key.Public())
			require.NoError(t, err)
			require.Equal(t, want, cert.RawSubjectPublicKeyInfo)
			require.Equal(t, []string{workload}, []string{cert.URIs[0].String()})
			require.Len(t, cert.URIs, 1)
			require.Empty(t, cert.DNSNames)
			require.Equal(t, testNow.Add(2*time.Hour), cert.NotAfter)
			require.Len(t, cert.SubjectKeyId, 20)
		})
	}

	refusals := map[string]struct {
		req    *Request
		code   caerr.Code
		reason string
	}{
		"neither CSR nor key":     {req: &Request{Identity: mustURL(t, workload)}, code: caerr.InvalidArgument, reason: ReasonNoPublicKey},
		"both CSR and key":        {req: &Request{Identity: mustURL(t, workload), CSR: ztunnelCSR(t, workload), PublicKey: ecKey(t, elliptic.P256()).Public()}, code: caerr.InvalidArgument, reason: ReasonNoPublicKey},
		"P-224 key":               {req: &Request{Identity: mustURL(t, workload), PublicKey: ecKey(t, elliptic.P224()).Public()}, code: caerr.InvalidArgument, reason: ReasonKeyType},
		"a private key":           {req: &Request{Identity: mustURL(t, workload), PublicKey: ecKey(t, elliptic.P256())}, code: caerr.InvalidArgument, reason: ReasonKeyType},
		"a short Ed25519 key":     {req: &Request{Identity: mustURL(t, workload), PublicKey: ed25519.PublicKey(make([]byte, 31))}, code: caerr.InvalidArgument, reason: ReasonKeyType},
		"identity outside the TD": {req: &Request{Identity: mustURL(t, "spiffe://evil.example/ns/a/sa/b"), PublicKey: ecKey(t, elliptic.P256()).Public()}, code: caerr.InvalidArgument, reason: ReasonIdentityInvalid},
	}
	for name, tc := range refusals {
		t.Run("refused: "+name, func(t *testing.T) {
			_, err := testEngine().Template(tc.req, is.cert)
			requireCAErr(t, err, tc.code, tc.reason)
		})
	}
}

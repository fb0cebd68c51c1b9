package authority_test

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/caerr"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/policy"
	"github.com/meshca/meshca/ca/profile"
	"github.com/meshca/meshca/ca/root"
)

const workload = "spiffe://cluster.local/ns/default/sa/app"

func TestSign_ChainInIstioOrderVerifiesWithGoAndOpenSSL(t *testing.T) {
	ca := newTestCA(t)
	for _, kind := range []string{"rsa2048", "p256", "p384", "ed25519"} {
		t.Run(kind, func(t *testing.T) {
			res, err := ca.rt.Authority.Sign(context.Background(), authority.Request{
				CSR: istioCSR(t, newKey(t, kind), workload), Identity: spiffe(t, workload), Requester: "test",
			})
			require.NoError(t, err)

			// Istio order: [leaf, intermediate, roots]; every middle element is one cert.
			require.Len(t, res.Chain, 3)
			leafs, err := root.ParseCertificates([]byte(res.Chain[0]))
			require.NoError(t, err)
			require.Len(t, leafs, 1)
			inters, err := root.ParseCertificates([]byte(res.Chain[1]))
			require.NoError(t, err)
			require.Len(t, inters, 1)
			require.True(t, inters[0].Equal(ca.rt.Authority.Material().Bundle.Cert))
			roots, err := root.ParseCertificates([]byte(res.Chain[2]))
			require.NoError(t, err)
			require.Len(t, roots, 1)
			require.True(t, roots[0].IsCA)

			rootPool, interPool := x509.NewCertPool(), x509.NewCertPool()
			rootPool.AddCert(roots[0])
			interPool.AddCert(inters[0])
			chains, err := leafs[0].Verify(x509.VerifyOptions{
				Roots: rootPool, Intermediates: interPool,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			})
			require.NoError(t, err)
			require.Len(t, chains[0], 3)

			dir := t.TempDir()
			out, err := exec.Command("openssl", "verify", "-x509_strict",
				"-CAfile", writeFile(t, dir, "roots.pem", []byte(res.Chain[2])),
				"-untrusted", writeFile(t, dir, "inter.pem", []byte(res.Chain[1])),
				"-purpose", "sslclient",
				writeFile(t, dir, "leaf.pem", []byte(res.Chain[0]))).CombinedOutput()
			require.NoError(t, err, string(out))
			require.Equal(t, dir+"/leaf.pem: OK\n", string(out))
		})
	}
}

func TestSign_LeafMatchesIstioContract(t *testing.T) {
	ca := newTestCA(t)
	res, err := ca.rt.Authority.Sign(context.Background(), authority.Request{
		CSR: istioCSR(t, newKey(t, "p256"), workload), Identity: spiffe(t, workload), TTL: 12 * time.Hour,
	})
	require.NoError(t, err)
	leaf, err := res.Leaf()
	require.NoError(t, err)
	require.Empty(t, leaf.RawSubject[2:], "subject must be an empty SEQUENCE")
	require.Equal(t, []byte{0x30, 0x00}, leaf.RawSubject)
	require.Equal(t, []*url.URL{spiffe(t, workload)}, leaf.URIs)
	var sanCritical bool
	for _, e := range leaf.Extensions {
		if e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 17}) {
			sanCritical = e.Critical
		}
	}
	require.True(t, sanCritical, "SAN must be critical with an empty subject")
	require.Equal(t, x509.KeyUsageDigitalSignature, leaf.KeyUsage)
	require.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, leaf.ExtKeyUsage)
	require.True(t, leaf.BasicConstraintsValid)
	require.False(t, leaf.IsCA)
	require.LessOrEqual(t, leaf.SerialNumber.BitLen(), 128)
	require.Greater(t, leaf.SerialNumber.BitLen(), 64, "a 128-bit random serial is this short with probability 2^-64")
	require.Equal(t, 12*time.Hour+policy.Backdate, leaf.NotAfter.Sub(leaf.NotBefore))

	// The record is durable and describes exactly this certificate.
	rec, err := ca.rt.Store.GetIssuance(context.Background(), hex.EncodeToString(leaf.SerialNumber.Bytes()))
	require.NoError(t, err)
	sum := sha256.Sum256(leaf.Raw)
	require.Equal(t, hex.EncodeToString(sum[:]), rec.Fingerprint)
	require.Equal(t, workload, rec.Identity)
	require.Equal(t, res.Record, rec)
	require.Contains(t, ca.audit.String(), `"event":"certificate.issued"`)
	require.Contains(t, ca.audit.String(), `"serial":"`+rec.Serial+`"`)
}

func TestSign_RejectionsAreClassifiedAndWriteNothing(t *testing.T) {
	type tc struct {
		csr      func(t *testing.T) []byte
		identity string
		ttl      time.Duration
		code     caerr.Code
		reason   string
	}
	p256 := func(tmpl *x509.CertificateRequest) func(t *testing.T) []byte {
		return func(t *testing.T) []byte { return csrPEM(t, newKey(t, "p256"), tmpl) }
	}
	withSANs := func(t *testing.T, mut func(*x509.CertificateRequest)) []byte {
		tmpl := &x509.CertificateRequest{URIs: []*url.URL{spiffe(t, workload)}}
		mut(tmpl)
		return csrPEM(t, newKey(t, "p256"), tmpl)
	}
	cases := map[string]tc{
		"foreign SPIFFE ID": {csr: func(t *testing.T) []byte {
			return istioCSR(t, newKey(t, "p256"), "spiffe://cluster.local/ns/kube-system/sa/admin")
		}, code: caerr.InvalidArgument, reason: policy.ReasonForeignIdentity},
		"DNS SAN": {csr: func(t *testing.T) []byte {
			return withSANs(t, func(r *x509.CertificateRequest) { r.DNSNames = []string{"evil.example.com"} })
		}, code: caerr.InvalidArgument, reason: policy.ReasonDNSSAN},
		"IP SAN": {csr: func(t *testing.T) []byte {
			return withSANs(t, func(r *x509.CertificateRequest) { r.IPAddresses = append(r.IPAddresses, []byte{10, 0, 0, 1}) })
		}, code: caerr.InvalidArgument, reason: policy.ReasonIPSAN},
		"email SAN": {csr: func(t *testing.T) []byte {
			return withSANs(t, func(r *x509.CertificateRequest) { r.EmailAddresses = []string{"a@example.com"} })
		}, code: caerr.InvalidArgument, reason: policy.ReasonEmailSAN},
		"common name": {csr: func(t *testing.T) []byte {
			return withSANs(t, func(r *x509.CertificateRequest) { r.Subject.CommonName = "app" })
		}, code: caerr.InvalidArgument, reason: policy.ReasonCommonName},
		"CA request": {csr: func(t *testing.T) []byte {
			bc, _ := asn1.Marshal(struct{ IsCA bool }{true})
			return withSANs(t, func(r *x509.CertificateRequest) {
				r.ExtraExtensions = append(r.ExtraExtensions, pkixExt(asn1.ObjectIdentifier{2, 5, 29, 19}, true, bc))
			})
		}, code: caerr.InvalidArgument, reason: policy.ReasonCARequest},
		"bad CSR signature": {csr: func(t *testing.T) []byte {
			b := istioCSR(t, newKey(t, "p256"), workload)
			block, _ := pem.Decode(b)
			block.Bytes[len(block.Bytes)-3] ^= 0xff
			return pem.EncodeToMemory(block)
		}, code: caerr.InvalidArgument, reason: policy.ReasonCSRSignature},
		"P-224 key": {csr: func(t *testing.T) []byte { return istioCSR(t, newKey(t, "p224"), workload) },
			code: caerr.InvalidArgument, reason: policy.ReasonKeyType},
		"DSA key": {csr: func(t *testing.T) []byte { return opensslDSACSR(t) },
			code: caerr.InvalidArgument, reason: policy.ReasonKeyType},
		"RSA-1024 key": {csr: func(t *testing.T) []byte { return istioCSR(t, newKey(t, "rsa1024"), workload) },
			code: caerr.InvalidArgument, reason: policy.ReasonKeyTooSmall},
		"TTL above max": {csr: p256(&x509.CertificateRequest{URIs: []*url.URL{{Scheme: "spiffe", Host: "cluster.local", Path: "/ns/default/sa/app"}}}),
			ttl: 91 * 24 * time.Hour, code: caerr.InvalidArgument, reason: policy.ReasonTTLTooLong},
		"CSR over 64 KiB": {csr: func(t *testing.T) []byte {
			return []byte(strings.Repeat("A", policy.MaxCSRSize+1))
		}, code: caerr.InvalidArgument, reason: policy.ReasonCSRTooLarge},
		"PEM garbage": {csr: func(t *testing.T) []byte {
			return []byte("-----BEGIN CERTIFICATE REQUEST-----\nbm90IGEgY3Ny\n-----END CERTIFICATE REQUEST-----\n")
		}, code: caerr.InvalidArgument, reason: policy.ReasonCSRMalformed},
		"identity outside trust domain": {csr: func(t *testing.T) []byte {
			return istioCSR(t, newKey(t, "p256"), "spiffe://evil.example/ns/default/sa/app")
		}, identity: "spiffe://evil.example/ns/default/sa/app", code: caerr.InvalidArgument, reason: policy.ReasonIdentityInvalid},
	}
	ca := newTestCA(t)
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			id := workload
			if c.identity != "" {
				id = c.identity
			}
			res, err := ca.rt.Authority.Sign(context.Background(), authority.Request{CSR: c.csr(t), Identity: spiffe(t, id), TTL: c.ttl})
			require.Nil(t, res)
			require.Error(t, err)
			require.Equal(t, c.code, caerr.CodeOf(err), err.Error())
			require.Equal(t, c.reason, caerr.ReasonOf(err), err.Error())
			require.Zero(t, countRecords(t, ca.rt.Store), "a refused request must write nothing")
			require.Contains(t, ca.audit.String(), `"reason":"`+c.reason+`"`)
		})
	}
}

func TestSign_ExpiredIssuerIsUnavailableAndWritesNothing(t *testing.T) {
	ca := newTestCA(t)
	expired := ca.rt.Authority.Material().Bundle.Cert.NotAfter.Add(time.Minute)
	a := authority.New(ca.rt.Authority.Material(), policy.New(policy.Options{
		TrustDomain: "cluster.local", DefaultTTL: time.Hour, MaxTTL: 2 * time.Hour, Now: func() time.Time { return expired },
	}), ca.rt.Store)
	_, err := a.Sign(context.Background(), authority.Request{CSR: istioCSR(t, newKey(t, "p256"), workload), Identity: spiffe(t, workload)})
	require.Equal(t, caerr.Unavailable, caerr.CodeOf(err))
	require.Equal(t, policy.ReasonIssuerExpired, caerr.ReasonOf(err))
	require.Zero(t, countRecords(t, ca.rt.Store))
}

func TestSign_NotAfterClampedToIssuer(t *testing.T) {
	ca := newTestCA(t, func(c *config.Config) { c.Intermediate.Lifetime.Duration = 2 * time.Hour })
	res, err := ca.rt.Authority.Sign(context.Background(), authority.Request{
		CSR: istioCSR(t, newKey(t, "p256"), workload), Identity: spiffe(t, workload), TTL: 48 * time.Hour,
	})
	require.NoError(t, err)
	leaf, err := res.Leaf()
	require.NoError(t, err)
	require.Equal(t, ca.rt.Authority.Material().Bundle.Cert.NotAfter, leaf.NotAfter)
	require.Equal(t, leaf.NotAfter, res.Record.NotAfter)
}

// The record is built from the template the encoder wrote, not from a parse
// of the result: the issued DER must parse and carry exactly the record's
// serial, validity and fingerprint, for every leaf profile of a catalyst CA
// and with a clock that is not on a whole second.
func TestSign_RecordDescribesTheIssuedCertificate(t *testing.T) {
	ca := newProfileCA(t, profile.Catalyst)
	now := time.Now().Truncate(time.Second).Add(987654321 * time.Nanosecond)
	pol := policy.New(policy.Options{
		TrustDomain: "cluster.local", DefaultTTL: time.Hour, MaxTTL: 2 * time.Hour, Now: func() time.Time { return now },
	})
	a := authority.New(ca.rt.Authority.Material(), pol, ca.rt.Store, authority.WithClock(func() time.Time { return now }))
	for _, p := range []profile.Name{profile.Classical, profile.Catalyst} {
		t.Run(string(p), func(t *testing.T) {
			res, err := a.Sign(context.Background(), authority.Request{
				CSR: istioCSR(t, newKey(t, "p256"), workload), Identity: spiffe(t, workload), TTL: 90 * time.Minute, Profile: p,
			})
			require.NoError(t, err)
			leaf, err := x509.ParseCertificate(res.DER)
			require.NoError(t, err)
			block, _ := pem.Decode([]byte(res.Chain[0]))
			require.Equal(t, res.DER, block.Bytes, "the chain's first element is the DER")

			sum := sha256.Sum256(res.DER)
			want := res.Record
			want.Serial = hex.EncodeToString(leaf.SerialNumber.Bytes())
			want.NotBefore, want.NotAfter = leaf.NotBefore, leaf.NotAfter
			want.Fingerprint = hex.EncodeToString(sum[:])
			require.Equal(t, want, res.Record)
			require.Equal(t, now.Add(90*time.Minute).Truncate(time.Second).UTC(), res.Record.NotAfter)

			stored, err := ca.rt.Store.GetIssuance(context.Background(), res.Record.Serial)
			require.NoError(t, err)
			require.Equal(t, res.Record, stored)
		})
	}
}

package authority_test

import (
	"context"
	"crypto/x509"
	"encoding/asn1"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/zmap/zlint/v3/lint"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/caerr"
	"github.com/meshca/meshca/ca/policy"
)

// istiodUsages is what istiod's RA puts in every CertificateSigningRequest
// (istio.io/istio security/pkg/pki/ra/k8s_ra.go), whatever the key type.
var istiodUsages = []policy.Usage{policy.UsageDigitalSignature, policy.UsageKeyEncipherment, policy.UsageServerAuth, policy.UsageClientAuth}

// extensionValue is the DER value of extension oid in leaf, or nil.
func extensionValue(leaf *x509.Certificate, oid asn1.ObjectIdentifier) []byte {
	for _, e := range leaf.Extensions {
		if e.Id.Equal(oid) {
			return e.Value
		}
	}
	return nil
}

var (
	oidKU  = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidEKU = asn1.ObjectIdentifier{2, 5, 29, 37}
)

// requireZLintClean fails on any zlint warning or error outside webPKIOnly.
func requireZLintClean(t *testing.T, what string, der []byte, alsoAllowed ...string) {
	t.Helper()
	var bad []string
	for name, r := range lintDER(t, der) {
		if r.Status != lint.Warn && r.Status != lint.Error && r.Status != lint.Fatal {
			continue
		}
		if _, ok := webPKIOnly[name]; ok {
			continue
		}
		bad = append(bad, name+" ("+r.Status.String()+": "+r.Details+")")
	}
	sort.Strings(bad)
	require.Empty(t, bad, "%s: zlint findings", what)
}

func TestSign_RequestedUsagesFitTheKeyAndTheDropIsReported(t *testing.T) {
	ca := newTestCA(t)
	tests := map[string]struct {
		kind    string
		ku      []byte
		dropped bool
	}{
		"rsa2048": {kind: "rsa2048", ku: []byte{0x03, 0x02, 0x05, 0xa0}},
		"p256":    {kind: "p256", ku: []byte{0x03, 0x02, 0x07, 0x80}, dropped: true},
		"ed25519": {kind: "ed25519", ku: []byte{0x03, 0x02, 0x07, 0x80}, dropped: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			res, err := ca.rt.Authority.Sign(context.Background(), authority.Request{
				CSR: istioCSR(t, newKey(t, tc.kind), workload), Identity: spiffe(t, workload), Requester: "k8s-csr:istiod",
				Options: []policy.SignOption{policy.WithUsages(istiodUsages...)},
			})
			require.NoError(t, err)
			leaf, err := res.Leaf()
			require.NoError(t, err)
			require.Equal(t, tc.ku, extensionValue(leaf, oidKU))
			require.Equal(t, []byte{0x30, 0x14, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02},
				extensionValue(leaf, oidEKU))
			if tc.dropped {
				require.Len(t, res.Adjustments, 1)
				require.Equal(t, policy.ReasonKeyEnciphermentDropped, res.Adjustments[0].Reason)
			} else {
				require.Empty(t, res.Adjustments)
			}
			requireZLintClean(t, name+" leaf with istiod's usages", res.DER)
		})
	}
}

func TestSign_DurationIsClampedToThePolicyMaximum(t *testing.T) {
	ca := newTestCA(t)
	maxTTL := ca.cfg.Issuance.MaxCertTTL.Duration
	res, err := ca.rt.Authority.Sign(context.Background(), authority.Request{
		CSR: istioCSR(t, newKey(t, "p256"), workload), Identity: spiffe(t, workload),
		Options: []policy.SignOption{policy.WithDuration(policy.Duration{Requested: maxTTL + 24*time.Hour})},
	})
	require.NoError(t, err)
	leaf, err := res.Leaf()
	require.NoError(t, err)
	require.Equal(t, maxTTL+policy.Backdate, leaf.NotAfter.Sub(leaf.NotBefore))
	require.Equal(t, []policy.Adjustment{{Reason: policy.ReasonDurationClamped, Message: res.Adjustments[0].Message}}, res.Adjustments)
	require.Equal(t, leaf.NotAfter, res.Record.NotAfter)
}

func TestSign_PublicKeyRequestIssuesForThatKey(t *testing.T) {
	ca := newTestCA(t)
	for _, kind := range []string{"p256", "rsa2048", "ed25519"} {
		t.Run(kind, func(t *testing.T) {
			key := newKey(t, kind)
			res, err := ca.rt.Authority.Sign(context.Background(), authority.Request{
				PublicKey: key.Public(), Identity: spiffe(t, workload), Requester: "k8s-pcr:test",
				Options: []policy.SignOption{policy.WithDuration(policy.Duration{Max: 2 * time.Hour, Min: time.Hour})},
			})
			require.NoError(t, err)
			leaf, err := res.Leaf()
			require.NoError(t, err)
			want, err := x509.MarshalPKIXPublicKey(key.Public())
			require.NoError(t, err)
			require.Equal(t, want, leaf.RawSubjectPublicKeyInfo)
			require.Equal(t, workload, leaf.URIs[0].String())
			require.Len(t, leaf.URIs, 1)
			require.Equal(t, 2*time.Hour+policy.Backdate, leaf.NotAfter.Sub(leaf.NotBefore))
			_, err = leaf.Verify(x509.VerifyOptions{
				Roots: ca.rt.Authority.Roots(), Intermediates: ca.rt.Authority.Intermediates(),
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			})
			require.NoError(t, err)
			rec, err := ca.rt.Store.GetIssuance(context.Background(), res.Record.Serial)
			require.NoError(t, err)
			require.Equal(t, res.Record, rec)
			requireZLintClean(t, kind+" public-key leaf", res.DER)
		})
	}
}

func TestSign_OptionRefusalsAreClassifiedAuditedAndWriteNothing(t *testing.T) {
	tests := map[string]struct {
		req    func(t *testing.T) authority.Request
		code   caerr.Code
		reason string
	}{
		"isCA from an issuer that does not allow it": {
			req: func(t *testing.T) authority.Request {
				return authority.Request{CSR: istioCSR(t, newKey(t, "p256"), workload), Identity: spiffe(t, workload),
					Options: []policy.SignOption{policy.RequestCA(false)}}
			},
			code: caerr.PermissionDenied, reason: policy.ReasonCANotAllowed,
		},
		"isCA from an issuer that allows it: the policy refuses": {
			req: func(t *testing.T) authority.Request {
				return authority.Request{CSR: istioCSR(t, newKey(t, "p256"), workload), Identity: spiffe(t, workload),
					Options: []policy.SignOption{policy.RequestCA(true)}}
			},
			code: caerr.PermissionDenied, reason: policy.ReasonCARequest,
		},
		"cert sign usage": {
			req: func(t *testing.T) authority.Request {
				return authority.Request{CSR: istioCSR(t, newKey(t, "p256"), workload), Identity: spiffe(t, workload),
					Options: []policy.SignOption{policy.WithUsages(policy.UsageDigitalSignature, "cert sign")}}
			},
			code: caerr.InvalidArgument, reason: policy.ReasonUsageNotAllowed,
		},
		"both a CSR and a public key": {
			req: func(t *testing.T) authority.Request {
				return authority.Request{CSR: istioCSR(t, newKey(t, "p256"), workload), PublicKey: newKey(t, "p256").Public(), Identity: spiffe(t, workload)}
			},
			code: caerr.InvalidArgument, reason: policy.ReasonNoPublicKey,
		},
		"a P-224 public key": {
			req: func(t *testing.T) authority.Request {
				return authority.Request{PublicKey: newKey(t, "p224").Public(), Identity: spiffe(t, workload)}
			},
			code: caerr.InvalidArgument, reason: policy.ReasonKeyType,
		},
		"a public key for a foreign trust domain": {
			req: func(t *testing.T) authority.Request {
				return authority.Request{PublicKey: newKey(t, "p256").Public(), Identity: spiffe(t, "spiffe://evil.example/ns/a/sa/b")}
			},
			code: caerr.InvalidArgument, reason: policy.ReasonIdentityInvalid,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ca := newTestCA(t)
			_, err := ca.rt.Authority.Sign(context.Background(), tc.req(t))
			require.Error(t, err)
			var ce *caerr.Error
			require.ErrorAs(t, err, &ce)
			require.Equal(t, tc.code, ce.Code, "%v", err)
			require.Equal(t, tc.reason, ce.Reason, "%v", err)
			require.Zero(t, countRecords(t, ca.rt.Store))
			require.Contains(t, ca.audit.String(), `"event":"certificate.denied"`)
			require.Contains(t, ca.audit.String(), `"reason":"`+tc.reason+`"`)
			require.False(t, strings.Contains(ca.audit.String(), "certificate.issued"))
		})
	}
}

package authority_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"testing"
	"time"

	"github.com/meshca/meshca/ca/audit"
	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/profile"
	"github.com/meshca/meshca/ca/store"
)

// discardRecords keeps nothing. It isolates the engine's CPU from bbolt's
// commit and fsync in BenchmarkSign/store=none; store=bolt is the real path.
type discardRecords struct{}

func (discardRecords) PutIssuance(context.Context, store.Issuance) error { return nil }
func (discardRecords) GetIssuance(context.Context, string) (store.Issuance, error) {
	return store.Issuance{}, store.ErrNotFound
}
func (discardRecords) ListIssuances(context.Context, func(store.Issuance) bool) error { return nil }
func (discardRecords) PruneIssuances(context.Context, time.Time) (int, error)         { return 0, nil }

// BenchmarkSign is one issuance as a front door asks for it: an
// istio-agent shaped P-256 CSR, the policy, the encoder, the record and
// the audit line (to io.Discard), for a classical and a Catalyst CA with
// the default EC-P256 intermediate key.
func BenchmarkSign(b *testing.B) {
	for _, p := range []profile.Name{profile.Classical, profile.Catalyst} {
		for _, st := range []string{"none", "bolt"} {
			b.Run(fmt.Sprintf("profile=%s/store=%s", p, st), func(b *testing.B) {
				benchSign(b, p, st == "bolt")
			})
		}
	}
}

// BenchmarkSign_VerifyAlways is BenchmarkSign/store=none with
// issuance.verifySignatures: always, for comparison with the default.
func BenchmarkSign_VerifyAlways(b *testing.B) {
	for _, p := range []profile.Name{profile.Classical, profile.Catalyst} {
		b.Run(fmt.Sprintf("profile=%s/store=none", p), func(b *testing.B) {
			benchSign(b, p, false, func(c *config.Config) { c.Issuance.VerifySignatures = config.VerifySignaturesAlways })
		})
	}
}

func benchSign(b *testing.B, p profile.Name, bolt bool, mutate ...func(*config.Config)) {
	ca := newProfileCA(b, p, mutate...)
	a := ca.rt.Authority
	if !bolt {
		pol, err := authority.PolicyFromConfig(ca.cfg)
		if err != nil {
			b.Fatal(err)
		}
		a = authority.New(a.Material(), pol, discardRecords{},
			authority.WithAudit(audit.New(slog.New(slog.NewJSONHandler(io.Discard, nil)))),
			authority.WithProfile(ca.cfg.Issuance.Profile),
			authority.WithVerifySignatures(authority.VerifyModeOf(ca.cfg.Issuance.VerifySignatures)))
	}
	const pool = 64
	csrs := make([][]byte, pool)
	ids := make([]*url.URL, pool)
	for i := range csrs {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		ids[i], _ = url.Parse(fmt.Sprintf("spiffe://cluster.local/ns/bench/sa/sa-%d", i))
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject: pkix.Name{Organization: []string{""}}, URIs: []*url.URL{ids[i]},
		}, key)
		if err != nil {
			b.Fatal(err)
		}
		csrs[i] = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	}
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := a.Sign(ctx, authority.Request{CSR: csrs[i%pool], Identity: ids[i%pool], Requester: "bench"}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

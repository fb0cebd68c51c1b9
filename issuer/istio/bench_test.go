package istio_test

import (
	"context"
	"net/url"
	"testing"

	"google.golang.org/protobuf/types/known/structpb"
	pb "istio.io/api/security/v1alpha1"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/profile"
	"github.com/meshca/meshca/issuer/authn"
	"github.com/meshca/meshca/issuer/istio"
)

// fixedAuthn authenticates every request as one caller.
type fixedAuthn struct{ caller *authn.Caller }

func (f fixedAuthn) Authenticate(context.Context, authn.Credentials) (*authn.Caller, error) {
	return f.caller, nil
}

// fixedSigner answers every request with one chain.
type fixedSigner struct{ res *authority.Result }

func (f fixedSigner) Sign(context.Context, authority.Request) (*authority.Result, error) {
	return f.res, nil
}

// benchmarkFrontDoor is the front door's own cost per request (what it adds
// to the engine's BenchmarkSign): authentication, CertSigner, rate limits,
// metrics and the response, with a signer that does no work.
func benchmarkFrontDoor(b *testing.B, opts istio.Options, certSigner string) {
	id, _ := url.Parse("spiffe://cluster.local/ns/bench/sa/app")
	opts.Authenticator = fixedAuthn{&authn.Caller{Identity: id, Authenticator: authn.ClientCertificate, Cluster: "Kubernetes"}}
	opts.Signer = fixedSigner{&authority.Result{Chain: []string{"leaf", "intermediate", "root"}}}
	opts.Clusters = []string{"Kubernetes"}
	svc := istio.New(opts)
	md, err := structpb.NewStruct(map[string]any{istio.MetaCertSigner: certSigner})
	if err != nil {
		b.Fatal(err)
	}
	req := &pb.IstioCertificateRequest{Csr: "csr", ValidityDuration: 3600, Metadata: md}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := svc.CreateCertificate(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFrontDoor: istio-agent's usual request (CertSigner "") without
// authentication.certSigners; the baseline the CertSigner paths compare to.
func BenchmarkFrontDoor(b *testing.B) {
	benchmarkFrontDoor(b, istio.Options{}, "")
}

// BenchmarkFrontDoor_CertSigners: with authentication.certSigners, an empty
// CertSigner (the default signer) must cost what it costs without them,
// plus one counter; a configured one adds its requester suffix.
func BenchmarkFrontDoor_CertSigners(b *testing.B) {
	opts := istio.Options{CertSigners: []istio.CertSigner{{Name: "gateways", Profile: profile.Classical}}}
	b.Run("signer=default", func(b *testing.B) { benchmarkFrontDoor(b, opts, "") })
	b.Run("signer=gateways", func(b *testing.B) { benchmarkFrontDoor(b, opts, "gateways") })
}

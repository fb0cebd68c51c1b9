package certenc

import (
	"crypto/rand"
	"testing"
)

// The benchmarks issue an Istio workload leaf like istiod's (P-256
// subject key, see workloadTemplate) from an intermediate, classically and as Catalyst with an
// ML-DSA-65 alternative key, for the two issuer key types meshca creates
// most. Compare BenchmarkBuild_Catalyst with BenchmarkBuild_Classical of
// the same issuer. Each includes the classical signature self-check that
// x509.CreateCertificate also performs.

var benchIssuers = []string{"P256", "RSA3072"}

func benchTemplate(b *testing.B) *Template {
	leafKey := genKey(b, "P256")
	return &Template{
		Certificate: workloadTemplate(b, []byte("0123456789abcdefghij")),
		PublicKey:   spkiOf(b, leafKey.Public()),
		Issuer:      name(b, "meshca intermediate"),
	}
}

func BenchmarkBuild_Classical(b *testing.B) {
	for _, kind := range benchIssuers {
		b.Run("issuer="+kind, func(b *testing.B) {
			issuer, tmpl := genKey(b, kind), benchTemplate(b)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Build(tmpl, issuer, rand.Reader); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkBuild_Catalyst(b *testing.B) {
	for _, kind := range benchIssuers {
		b.Run("issuer="+kind, func(b *testing.B) {
			issuer, alt, tmpl := genKey(b, kind), newMLDSASigner(b), benchTemplate(b)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := BuildCatalyst(tmpl, issuer, Catalyst{Issuer: alt}, rand.Reader); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBuildTBS is the encoding alone, without any signature.
func BenchmarkBuildTBS(b *testing.B) {
	issuer, tmpl := genKey(b, "P256"), benchTemplate(b)
	alg, err := SignatureAlgorithmOf(issuer)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := BuildTBS(tmpl, alg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMLDSA65Sign is the alternative signature alone, for reference.
func BenchmarkMLDSA65Sign(b *testing.B) {
	alt := newMLDSASigner(b)
	msg := make([]byte, 600) // about a workload preTBS
	for b.Loop() {
		if _, err := alt.Sign(rand.Reader, msg, nil); err != nil {
			b.Fatal(err)
		}
	}
}

package certenc

import (
	"crypto"
	"crypto/rand"
	"testing"
)

// The benchmarks issue an Istio workload leaf like istiod's (P-256
// subject key, see workloadTemplate) from an intermediate, classically and as Catalyst with an
// ML-DSA-65 alternative key, for the two issuer key types meshca creates
// most. Compare BenchmarkBuild_Catalyst with BenchmarkBuild_Classical of
// the same issuer. verify=auto is the default VerifyMode (no self-check of
// the in-process P-256 signature; RSA and ML-DSA are checked); verify=always
// checks every signature, as x509.CreateCertificate does.

var benchIssuers = []string{"P256", "RSA3072"}

func benchTemplate(b testing.TB) *Template {
	leafKey := genKey(b, "P256")
	return &Template{
		Certificate: workloadTemplate(b, []byte("0123456789abcdefghij")),
		PublicKey:   spkiOf(b, leafKey.Public()),
		Issuer:      name(b, "meshca intermediate"),
	}
}

var benchModes = []VerifyMode{VerifyAuto, VerifyAlways}

func BenchmarkBuild_Classical(b *testing.B) {
	for _, kind := range benchIssuers {
		for _, mode := range benchModes {
			b.Run("issuer="+kind+"/verify="+mode.String(), func(b *testing.B) {
				issuer, tmpl := genKey(b, kind), benchTemplate(b)
				b.ReportAllocs()
				for b.Loop() {
					if _, err := Build(tmpl, issuer, rand.Reader, mode); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func BenchmarkBuild_Catalyst(b *testing.B) {
	for _, kind := range benchIssuers {
		for _, mode := range benchModes {
			b.Run("issuer="+kind+"/verify="+mode.String(), func(b *testing.B) {
				issuer, alt, tmpl := genKey(b, kind), newMLDSASigner(b), benchTemplate(b)
				b.ReportAllocs()
				for b.Loop() {
					if _, err := BuildCatalyst(tmpl, issuer, Catalyst{Issuer: alt}, rand.Reader, mode); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
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

// BenchmarkMLDSA65Verify is the self-check of the alternative signature
// alone, which VerifyAuto keeps.
func BenchmarkMLDSA65Verify(b *testing.B) {
	alt := newMLDSASigner(b)
	msg := make([]byte, 600)
	sig, err := alt.Sign(rand.Reader, msg, crypto.Hash(0))
	if err != nil {
		b.Fatal(err)
	}
	pub := alt.Public().(mldsaPublic)
	for b.Loop() {
		if err := pub.Verify(msg, sig); err != nil {
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

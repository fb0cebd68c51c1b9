package mldsa_test

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/meshca/meshca/ca/pqc/internal/pqctest"
	"github.com/meshca/meshca/ca/pqc/mldsa"
	"github.com/stretchr/testify/require"
)

// RFC 9881's example keys in all three private-key forms must parse and
// derive the example public key; the seed form must re-encode byte for byte.
func TestParsePKCS8_RFC9881ExampleKeysDeriveTheExamplePublicKey(t *testing.T) {
	forms := []string{"seed", "expanded", "both"}
	for _, p := range mldsa.ParameterSets() {
		wantPub, err := mldsa.ParsePKIXPublicKey(pqctest.PEM(t, "rfc9881", p.Name()+".pub"))
		require.NoError(t, err)
		require.Same(t, p, wantPub.ParameterSet())
		for _, form := range forms {
			t.Run(p.Name()+"/"+form, func(t *testing.T) {
				der := pqctest.PEM(t, "rfc9881", p.Name()+"-"+form+".priv")
				sk, err := mldsa.ParsePKCS8PrivateKey(der)
				require.NoError(t, err)
				require.Same(t, p, sk.ParameterSet())
				require.True(t, wantPub.Equal(sk.Public()), "derived public key differs from %s.pub", p.Name())

				wantSeed := make([]byte, 32)
				for i := range wantSeed {
					wantSeed[i] = byte(i) // RFC 9881 examples use seed 00 01 .. 1f
				}
				switch form {
				case "seed":
					require.Equal(t, wantSeed, sk.Seed())
					again, err := mldsa.MarshalPKCS8PrivateKey(sk)
					require.NoError(t, err)
					require.Equal(t, der, again, "seed-only encoding must match RFC 9881 byte for byte")
				case "both":
					require.Equal(t, wantSeed, sk.Seed())
				case "expanded":
					require.Nil(t, sk.Seed(), "an expanded-only key has no seed")
					again, err := mldsa.MarshalPKCS8PrivateKey(sk)
					require.NoError(t, err)
					require.Equal(t, der, again, "expanded-only keys re-encode as expandedKey")
				}
				sig, err := sk.SignWithContext([]byte("rfc9881"), nil)
				require.NoError(t, err)
				require.NoError(t, wantPub.Verify([]byte("rfc9881"), sig))
			})
		}
	}
}

// The three bad keys of the RFC 9881 examples, each rejected for its own
// reason (see the .txt dumps and the diff against the good keys):
//   - bad-1 is a "both" key whose expandedKey belongs to another seed;
//   - bad-2 is an expanded key with one byte of tr changed;
//   - bad-3 is an expanded key with one byte of t0 changed.
func TestParsePKCS8_RejectsRFC9881BadKeysWithSpecificErrors(t *testing.T) {
	tests := map[string]struct {
		file string
		want []error
	}{
		"both with mismatched expandedKey": {"bad-ML-DSA-44-1.priv", []error{mldsa.ErrSeedMismatch}},
		"expanded with corrupted tr":       {"bad-ML-DSA-44-2.priv", []error{mldsa.ErrExpandedKeyInconsistent, mldsa.ErrTRMismatch}},
		"expanded with corrupted t0":       {"bad-ML-DSA-44-3.priv", []error{mldsa.ErrExpandedKeyInconsistent, mldsa.ErrT0Mismatch}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := mldsa.ParsePKCS8PrivateKey(pqctest.PEM(t, "rfc9881", tc.file))
			for _, want := range tc.want {
				require.ErrorIs(t, err, want)
			}
		})
	}
}

func TestNewKeyFromExpanded_RejectsOutOfRangeSecretCoefficients(t *testing.T) {
	for _, p := range mldsa.ParameterSets() {
		t.Run(p.Name(), func(t *testing.T) {
			sk, err := mldsa.GenerateKey(p, nil)
			require.NoError(t, err)
			expanded := sk.ExpandedKey()
			// First s1 coefficient: the low 3 (η=2) or 4 (η=4) bits after
			// rho, K and tr. All-ones encodes η-7 or η-15: out of range.
			bad := bytes.Clone(expanded)
			bad[128] |= 0x0f
			_, err = mldsa.NewKeyFromExpanded(p, bad)
			require.ErrorIs(t, err, mldsa.ErrCoefficientOutOfRange)
			require.ErrorIs(t, err, mldsa.ErrExpandedKeyInconsistent)
		})
	}
}

// The independent FIPS 204 re-derivation used for expanded keys must agree
// with circl on keys circl derived from seeds, for every parameter set.
func TestNewKeyFromExpanded_AcceptsCirclDerivedKeys(t *testing.T) {
	for _, p := range mldsa.ParameterSets() {
		for i := range 4 {
			t.Run(fmt.Sprintf("%s/%d", p.Name(), i), func(t *testing.T) {
				sk, err := mldsa.GenerateKey(p, nil)
				require.NoError(t, err)
				imported, err := mldsa.NewKeyFromExpanded(p, sk.ExpandedKey())
				require.NoError(t, err)
				require.True(t, imported.Equal(sk))
				require.True(t, imported.PublicKey().Equal(sk.PublicKey()))
			})
		}
	}
}

// pureMLDSAFile matches hackathon file names of pure ML-DSA artifacts
// (not HashML-DSA "-with-sha512", not composite "ml-dsa-44-ecdsa-...").
var pureMLDSAFile = regexp.MustCompile(`^ml-dsa-(44|65|87)-2\.16\.840\.1\.101\.3\.4\.3\.(17|18|19)_`)

// Every pure ML-DSA private key in the hackathon archives (seed,
// expandedkey and both forms from OpenSSL 3.5, Bouncy Castle and
// Carl Redhound) parses and matches its trust anchor's public key.
func TestParsePKCS8_HackathonPrivateKeysMatchTheirTrustAnchors(t *testing.T) {
	const wantPerProvider = 9 // 3 parameter sets x 3 forms
	for _, provider := range []string{"ossl35", "bc", "carl-redhound"} {
		archive := pqctest.Zip(t, provider)
		names := archive.Names(func(name string) bool {
			return pureMLDSAFile.MatchString(name) && strings.HasSuffix(name, "_priv.der")
		})
		require.Len(t, names, wantPerProvider, provider)
		for _, name := range names {
			t.Run(provider+"/"+name, func(t *testing.T) {
				prefix := name[:strings.LastIndex(name, "_")]
				prefix = prefix[:strings.LastIndex(prefix, "_")]
				ta, ok := archive[prefix+"_ta.der"]
				require.True(t, ok, "no trust anchor for %s", name)
				cert, err := x509.ParseCertificate(ta)
				require.NoError(t, err)
				wantPub, err := mldsa.ParsePKIXPublicKey(cert.RawSubjectPublicKeyInfo)
				require.NoError(t, err)

				sk, err := mldsa.ParsePKCS8PrivateKey(archive[name])
				require.NoError(t, err)
				require.True(t, wantPub.Equal(sk.Public()))
				if strings.Contains(name, "_expandedkey_") {
					require.Nil(t, sk.Seed())
				} else {
					require.Len(t, sk.Seed(), mldsa.SeedSize)
				}
			})
		}
	}
}

package composite_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/meshca/meshca/ca/pqc/composite"
	"github.com/meshca/meshca/ca/pqc/mldsa"
	"github.com/stretchr/testify/require"
)

func TestAlgorithms_MatchDraft19Table(t *testing.T) {
	algs := composite.Algorithms()
	require.Len(t, algs, 18)
	for i, a := range algs {
		require.Equal(t, fmt.Sprintf("1.3.6.1.5.5.7.6.%d", 37+i), a.OID().String(), a.Name())
		// draft-19 section 7 abbreviates the brainpool curves in the label.
		wantLabel := "COMPSIG-" + strings.NewReplacer("brainpoolP256r1", "BP256", "brainpoolP384r1", "BP384").Replace(a.Name())
		require.Equal(t, wantLabel, a.Label())
		require.True(t, strings.HasPrefix(a.Name(), "MLDSA"+a.MLDSA().Name()[len("ML-DSA-"):]+"-"), a.Name())
		byOID, ok := composite.AlgorithmByOID(a.OID())
		require.True(t, ok)
		require.Same(t, a, byOID)
		byName, ok := composite.AlgorithmByName("id-" + a.Name())
		require.True(t, ok)
		require.Same(t, a, byName)
		require.Equal(t, pkix.AlgorithmIdentifier{Algorithm: a.OID()}, a.AlgorithmIdentifier())
	}

	tests := map[string]struct {
		alg     *composite.Algorithm
		oid     string
		label   string
		ph      string
		trad    string
		canSign bool
	}{
		"default MLDSA65-ECDSA-P256-SHA512": {composite.MLDSA65ECDSAP256SHA512, "1.3.6.1.5.5.7.6.45",
			"COMPSIG-MLDSA65-ECDSA-P256-SHA512", "SHA-512", "ECDSA P-256 with SHA-256", true},
		"MLDSA44-ECDSA-P256-SHA256": {composite.MLDSA44ECDSAP256SHA256, "1.3.6.1.5.5.7.6.40",
			"COMPSIG-MLDSA44-ECDSA-P256-SHA256", "SHA-256", "ECDSA P-256 with SHA-256", true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			require.Equal(t, tc.oid, tc.alg.OID().String())
			require.Equal(t, tc.label, tc.alg.Label())
			require.Equal(t, tc.ph, tc.alg.PreHash())
			require.Equal(t, tc.trad, tc.alg.Traditional())
			require.Equal(t, tc.canSign, tc.alg.CanSign())
		})
	}
	require.Same(t, composite.MLDSA65ECDSAP256SHA512, composite.Default)
}

func TestAlgorithms_EighteenOfWhichTwoSign(t *testing.T) {
	var signers []string
	all := composite.Algorithms()
	require.Len(t, all, 18)
	for _, a := range all {
		if a.CanSign() {
			signers = append(signers, a.Name())
		}
	}
	require.Equal(t, []string{"MLDSA44-ECDSA-P256-SHA256", "MLDSA65-ECDSA-P256-SHA512"}, signers)
}

// The two worked examples of M' published with draft-19
// (src/messageFormatSample_ctx.md and _noctx.md).
func TestMessageRepresentative_MatchesDraftExamples(t *testing.T) {
	const prefixAndLabel = "436f6d706f73697465416c676f726974686d5369676e61747572657332303235" +
		"434f4d505349472d4d4c44534136352d45434453412d503235362d534841353132"
	const phM = "0f89ee1fcb7b0a4f7809d1267a029719004c5a5e5ec323a7c3523a20974f9a3f" +
		"202f56fadba4cd9e8d654ab9f2e96dc5c795ea176fa20ede8d854c342f903533"
	tests := map[string]struct {
		ctx  string
		want string
	}{
		"with context":  {"0813061205162623", prefixAndLabel + "08" + "0813061205162623" + phM},
		"empty context": {"", prefixAndLabel + "00" + phM},
	}
	m, _ := hex.DecodeString("00010203040506070809")
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ctx, _ := hex.DecodeString(tc.ctx)
			got, err := composite.MLDSA65ECDSAP256SHA512.MessageRepresentative(m, ctx)
			require.NoError(t, err)
			require.Equal(t, tc.want, hex.EncodeToString(got))
		})
	}
	_, err := composite.Default.MessageRepresentative(m, make([]byte, 256))
	require.ErrorIs(t, err, composite.ErrContextTooLong)
}

var signingAlgorithms = []*composite.Algorithm{composite.MLDSA65ECDSAP256SHA512, composite.MLDSA44ECDSAP256SHA256}

func TestGenerateKey_RoundTripsThroughPKCS8AndSPKIAndVerifies(t *testing.T) {
	for _, alg := range signingAlgorithms {
		t.Run(alg.Name(), func(t *testing.T) {
			sk, err := composite.GenerateKey(alg, nil)
			require.NoError(t, err)
			require.Same(t, alg, sk.Algorithm())
			require.Len(t, sk.PublicKey().Bytes(), alg.MLDSA().PublicKeySize()+65)

			pkcs8, err := composite.MarshalPKCS8PrivateKey(sk)
			require.NoError(t, err)
			parsed, err := composite.ParsePKCS8PrivateKey(pkcs8)
			require.NoError(t, err)
			require.True(t, parsed.Equal(sk))
			require.Equal(t, sk.MLDSAPrivateKey().Seed(), parsed.MLDSAPrivateKey().Seed())

			spki, err := composite.MarshalPKIXPublicKey(parsed.PublicKey())
			require.NoError(t, err)
			pub, err := composite.ParsePKIXPublicKey(spki)
			require.NoError(t, err)
			require.True(t, pub.Equal(sk.Public()))

			msg := []byte("composite round trip")
			sig, err := parsed.Sign(rand.Reader, msg, crypto.Hash(0))
			require.NoError(t, err)
			require.NoError(t, pub.Verify(msg, sig))
			require.Equal(t, alg.AlgorithmIdentifier(), parsed.SignatureAlgorithm())

			ctxSig, err := parsed.SignWithContext(nil, msg, []byte("app"))
			require.NoError(t, err)
			require.NoError(t, pub.VerifyWithContext(msg, []byte("app"), ctxSig))
			require.ErrorIs(t, pub.Verify(msg, ctxSig), composite.ErrInvalidSignature)
		})
	}
}

func TestGenerateKey_NilMeansDefaultAndOthersAreRefused(t *testing.T) {
	sk, err := composite.GenerateKey(nil, nil)
	require.NoError(t, err)
	require.Same(t, composite.Default, sk.Algorithm())

	rsa, ok := composite.AlgorithmByName("MLDSA65-RSA3072-PSS-SHA512")
	require.True(t, ok)
	_, err = composite.GenerateKey(rsa, nil)
	require.ErrorIs(t, err, composite.ErrSigningUnsupported)
}

func TestSign_RejectsPrehashOpts(t *testing.T) {
	sk, err := composite.GenerateKey(nil, nil)
	require.NoError(t, err)
	d := sha256.Sum256([]byte("m"))
	_, err = sk.Sign(nil, d[:], crypto.SHA256)
	require.ErrorIs(t, err, composite.ErrUnsupportedSignerOpts)
}

// Both halves must verify, and the error says which one failed.
func TestVerify_RejectsFlippedBitInEveryComponent(t *testing.T) {
	for _, alg := range signingAlgorithms {
		t.Run(alg.Name(), func(t *testing.T) {
			sk, err := composite.GenerateKey(alg, nil)
			require.NoError(t, err)
			msg := []byte("flip")
			sig, err := sk.Sign(nil, msg, nil)
			require.NoError(t, err)
			pub := sk.PublicKey()
			require.NoError(t, pub.Verify(msg, sig))
			n := alg.MLDSA().SignatureSize()
			flip := func(b []byte, i int) []byte {
				c := bytes.Clone(b)
				c[i] ^= 0x80
				return c
			}

			tests := map[string]struct {
				pub        *composite.PublicKey
				msg, sig   []byte
				mldsaFails bool
				tradFails  bool
			}{
				"ML-DSA signature half":      {pub, msg, flip(sig, 10), true, false},
				"ECDSA signature half":       {pub, msg, flip(sig, len(sig)-2), false, true},
				"message":                    {pub, flip(msg, 0), sig, true, true},
				"ML-DSA public key half":     {mustPub(t, alg, flip(pub.Bytes(), 100)), msg, sig, true, false},
				"ECDSA signature truncated":  {pub, msg, sig[:len(sig)-1], false, true},
				"signatures swapped between": {pub, msg, append(bytes.Clone(sig[:n]), mustSign(t, msg)...), false, true},
			}
			for name, tc := range tests {
				t.Run(name, func(t *testing.T) {
					err := tc.pub.Verify(tc.msg, tc.sig)
					require.ErrorIs(t, err, composite.ErrInvalidSignature)
					if tc.mldsaFails {
						require.ErrorIs(t, err, composite.ErrMLDSAComponent)
					} else {
						require.NotErrorIs(t, err, composite.ErrMLDSAComponent)
					}
					if tc.tradFails {
						require.ErrorIs(t, err, composite.ErrTraditionalComponent)
					} else {
						require.NotErrorIs(t, err, composite.ErrTraditionalComponent)
					}
				})
			}

			_, err = composite.NewPublicKey(alg, flip(pub.Bytes(), len(pub.Bytes())-1))
			require.ErrorIs(t, err, composite.ErrMalformedPublicKey, "a flipped EC coordinate leaves the curve")
			require.ErrorIs(t, pub.Verify(msg, sig[:n]), composite.ErrMalformedSignature)
		})
	}
}

func mustPub(t *testing.T, alg *composite.Algorithm, raw []byte) *composite.PublicKey {
	t.Helper()
	pub, err := composite.NewPublicKey(alg, raw)
	require.NoError(t, err)
	return pub
}

// mustSign returns an unrelated but well-formed ECDSA P-256 signature.
func mustSign(t *testing.T, msg []byte) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	d := sha256.Sum256(msg)
	s, err := ecdsa.SignASN1(rand.Reader, k, d[:])
	require.NoError(t, err)
	return s
}

func TestNewPublicKey_RejectsCompressedECPoint(t *testing.T) {
	sk, err := composite.GenerateKey(composite.Default, nil)
	require.NoError(t, err)
	raw := sk.PublicKey().Bytes()
	n := composite.Default.MLDSA().PublicKeySize()
	point := raw[n:]
	x, y := point[1:33], point[33:]
	compressed := append([]byte{0x02 | y[31]&1}, x...)

	_, err = composite.NewPublicKey(composite.Default, append(bytes.Clone(raw[:n]), compressed...))
	require.ErrorIs(t, err, composite.ErrCompressedPoint)

	hybrid := append([]byte{0x06 | y[31]&1}, point[1:]...) // X9.62 hybrid form
	_, err = composite.NewPublicKey(composite.Default, append(bytes.Clone(raw[:n]), hybrid...))
	require.ErrorIs(t, err, composite.ErrMalformedPublicKey)
}

func TestNewPrivateKey_RejectsMalformedECPrivateKey(t *testing.T) {
	seed := bytes.Repeat([]byte{1}, mldsa.SeedSize)
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	d, err := k.Bytes()
	require.NoError(t, err)
	p256 := []byte{0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}
	p384 := []byte{0xa0, 0x07, 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22}
	ecpk := func(version byte, rest ...[]byte) []byte {
		body := append([]byte{0x02, 0x01, version, 0x04, 0x20}, d...)
		for _, r := range rest {
			body = append(body, r...)
		}
		return append(append(bytes.Clone(seed), 0x30, byte(len(body))), body...)
	}
	good, err := composite.NewPrivateKey(composite.Default, ecpk(1, p256))
	require.NoError(t, err)
	require.True(t, good.PublicKey().TraditionalPublicKey().(*ecdsa.PublicKey).Equal(&k.PublicKey))

	tests := map[string][]byte{
		"version 0":          ecpk(0, p256),
		"curve absent":       ecpk(1),
		"wrong curve":        ecpk(1, p384),
		"publicKey present":  ecpk(1, p256, []byte{0xa1, 0x03, 0x03, 0x01, 0x00}),
		"seed only":          seed,
		"trailing data":      append(ecpk(1, p256), 0x00),
		"short seed no body": seed[:31],
	}
	for name, raw := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := composite.NewPrivateKey(composite.Default, raw)
			require.ErrorIs(t, err, composite.ErrMalformedPrivateKey)
		})
	}
}

// The CA signs from many goroutines with one key.
func TestSign_IsSafeForConcurrentUse(t *testing.T) {
	sk, err := composite.GenerateKey(nil, nil)
	require.NoError(t, err)
	errs := make(chan error, 16)
	for i := range 16 {
		go func() {
			msg := []byte{byte(i)}
			sig, err := sk.Sign(rand.Reader, msg, crypto.Hash(0))
			if err == nil {
				err = sk.PublicKey().Verify(msg, sig)
			}
			errs <- err
		}()
	}
	for range 16 {
		require.NoError(t, <-errs)
	}
}

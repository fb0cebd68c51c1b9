package mldsa_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"testing"

	"github.com/meshca/meshca/ca/pqc/mldsa"
	"github.com/stretchr/testify/require"
)

// The RFC 9881 sizes, spelled out so that a wrong parameter table fails.
func TestParameterSets_HaveRFC9881SizesAndOIDs(t *testing.T) {
	tests := map[string]struct {
		p                       *mldsa.ParameterSet
		oid                     string
		pub, sig, expanded, cat int
	}{
		"ML-DSA-44": {mldsa.MLDSA44, "2.16.840.1.101.3.4.3.17", 1312, 2420, 2560, 2},
		"ML-DSA-65": {mldsa.MLDSA65, "2.16.840.1.101.3.4.3.18", 1952, 3309, 4032, 3},
		"ML-DSA-87": {mldsa.MLDSA87, "2.16.840.1.101.3.4.3.19", 2592, 4627, 4896, 5},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			require.Equal(t, name, tc.p.Name())
			require.Equal(t, tc.oid, tc.p.OID().String())
			require.Equal(t, tc.pub, tc.p.PublicKeySize())
			require.Equal(t, tc.sig, tc.p.SignatureSize())
			require.Equal(t, tc.expanded, tc.p.ExpandedKeySize())
			require.Equal(t, tc.cat, tc.p.SecurityCategory())
			byOID, ok := mldsa.ParameterSetByOID(tc.p.OID())
			require.True(t, ok)
			require.Same(t, tc.p, byOID)
			byName, ok := mldsa.ParameterSetByName(name)
			require.True(t, ok)
			require.Same(t, tc.p, byName)
		})
	}
	require.Same(t, mldsa.MLDSA65, mldsa.Default)
}

func TestGenerateKey_NilParameterSetMeansMLDSA65(t *testing.T) {
	sk, err := mldsa.GenerateKey(nil, nil)
	require.NoError(t, err)
	require.Same(t, mldsa.MLDSA65, sk.ParameterSet())
	require.Len(t, sk.Seed(), mldsa.SeedSize)
}

func TestGenerateKey_RoundTripsThroughPKCS8SPKIAndPEM(t *testing.T) {
	for _, p := range mldsa.ParameterSets() {
		t.Run(p.Name(), func(t *testing.T) {
			sk, err := mldsa.GenerateKey(p, nil)
			require.NoError(t, err)

			pkcs8, err := mldsa.MarshalPKCS8PrivateKey(sk)
			require.NoError(t, err)
			// Seed-only: SEQUENCE(52){INTEGER 0, AlgId(11), OCTET STRING{[0] 32 bytes}}.
			require.Len(t, pkcs8, 54, "seed-only PKCS#8 is 54 bytes")
			require.Equal(t, append([]byte{0x04, 0x22, 0x80, 0x20}, sk.Seed()...), pkcs8[18:])

			parsed, err := mldsa.ParsePKCS8PrivateKey(pkcs8)
			require.NoError(t, err)
			require.True(t, sk.Equal(parsed))
			require.Equal(t, sk.Seed(), parsed.Seed())

			spki, err := mldsa.MarshalPKIXPublicKey(sk.PublicKey())
			require.NoError(t, err)
			pub, err := mldsa.ParsePKIXPublicKey(spki)
			require.NoError(t, err)
			require.True(t, pub.Equal(sk.Public()))
			require.Len(t, pub.Bytes(), p.PublicKeySize())

			keyPEM, err := mldsa.MarshalPrivateKeyPEM(parsed)
			require.NoError(t, err)
			require.Contains(t, string(keyPEM), "-----BEGIN PRIVATE KEY-----")
			fromPEM, err := mldsa.ParsePrivateKeyPEM(keyPEM)
			require.NoError(t, err)
			pubPEM, err := mldsa.MarshalPublicKeyPEM(pub)
			require.NoError(t, err)
			require.Contains(t, string(pubPEM), "-----BEGIN PUBLIC KEY-----")
			pubFromPEM, err := mldsa.ParsePublicKeyPEM(pubPEM)
			require.NoError(t, err)

			msg := []byte("meshca round trip " + p.Name())
			sig, err := fromPEM.Sign(nil, msg, crypto.Hash(0))
			require.NoError(t, err)
			require.Len(t, sig, p.SignatureSize())
			require.NoError(t, pubFromPEM.Verify(msg, sig))
			require.Equal(t, pkix.AlgorithmIdentifier{Algorithm: p.OID()}, fromPEM.SignatureAlgorithm())
		})
	}
}

func TestSign_IsHedged(t *testing.T) {
	sk, err := mldsa.GenerateKey(mldsa.MLDSA44, nil)
	require.NoError(t, err)
	a, err := sk.Sign(nil, []byte("m"), crypto.Hash(0))
	require.NoError(t, err)
	b, err := sk.Sign(nil, []byte("m"), nil)
	require.NoError(t, err)
	require.NotEqual(t, a, b, "hedged signing must not be deterministic")
	require.NoError(t, sk.PublicKey().Verify([]byte("m"), a))
	require.NoError(t, sk.PublicKey().Verify([]byte("m"), b))
}

func TestSign_RejectsPrehashOpts(t *testing.T) {
	sk, err := mldsa.GenerateKey(mldsa.MLDSA44, nil)
	require.NoError(t, err)
	digest := sha256.Sum256([]byte("m"))
	_, err = sk.Sign(nil, digest[:], crypto.SHA256)
	require.ErrorIs(t, err, mldsa.ErrUnsupportedSignerOpts)
}

func TestSignWithContext_BindsTheContext(t *testing.T) {
	sk, err := mldsa.GenerateKey(mldsa.MLDSA65, nil)
	require.NoError(t, err)
	msg, ctx := []byte("message"), []byte("COMPSIG-test")
	sig, err := sk.SignWithContext(msg, ctx)
	require.NoError(t, err)
	require.NoError(t, sk.PublicKey().VerifyWithContext(msg, ctx, sig))
	require.ErrorIs(t, sk.PublicKey().Verify(msg, sig), mldsa.ErrInvalidSignature, "empty context must not verify")
	require.ErrorIs(t, sk.PublicKey().VerifyWithContext(msg, []byte("COMPSIG-tesT"), sig), mldsa.ErrInvalidSignature)

	_, err = sk.SignWithContext(msg, make([]byte, 256))
	require.ErrorIs(t, err, mldsa.ErrContextTooLong)
	require.ErrorIs(t, sk.PublicKey().VerifyWithContext(msg, make([]byte, 256), sig), mldsa.ErrContextTooLong)
}

func TestVerify_RejectsAnyFlippedBit(t *testing.T) {
	for _, p := range mldsa.ParameterSets() {
		t.Run(p.Name(), func(t *testing.T) {
			sk, err := mldsa.GenerateKey(p, nil)
			require.NoError(t, err)
			msg := []byte("flip me")
			sig, err := sk.Sign(nil, msg, crypto.Hash(0))
			require.NoError(t, err)
			require.NoError(t, sk.PublicKey().Verify(msg, sig))

			flip := func(b []byte, i int) []byte {
				c := bytes.Clone(b)
				c[i] ^= 0x01
				return c
			}
			for _, i := range []int{0, len(sig) / 2, len(sig) - 1} {
				require.ErrorIs(t, sk.PublicKey().Verify(msg, flip(sig, i)), mldsa.ErrInvalidSignature, "signature byte %d", i)
			}
			require.ErrorIs(t, sk.PublicKey().Verify(flip(msg, 3), sig), mldsa.ErrInvalidSignature)
			for _, i := range []int{0, 40, p.PublicKeySize() - 1} { // rho and t1
				pub, err := mldsa.NewPublicKey(p, flip(sk.PublicKey().Bytes(), i))
				require.NoError(t, err)
				require.ErrorIs(t, pub.Verify(msg, sig), mldsa.ErrInvalidSignature, "public key byte %d", i)
			}
			require.ErrorIs(t, sk.PublicKey().Verify(msg, sig[:len(sig)-1]), mldsa.ErrInvalidSignature)
		})
	}
}

func TestPrivateKey_EqualDistinguishesKeys(t *testing.T) {
	a, err := mldsa.GenerateKey(mldsa.MLDSA44, nil)
	require.NoError(t, err)
	b, err := mldsa.GenerateKey(mldsa.MLDSA44, nil)
	require.NoError(t, err)
	require.True(t, a.Equal(a))
	require.False(t, a.Equal(b))
	require.False(t, a.PublicKey().Equal(b.PublicKey()))
}

func TestParsePKCS8_RejectsMalformedEnvelopes(t *testing.T) {
	sk, err := mldsa.NewKeyFromSeed(mldsa.MLDSA44, make([]byte, 32))
	require.NoError(t, err)
	good, err := mldsa.MarshalPKCS8PrivateKey(sk)
	require.NoError(t, err)
	algID44 := []byte{0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x11}
	wrap := func(alg, priv []byte, extra ...byte) []byte {
		body := append([]byte{0x02, 0x01, 0x00}, alg...)
		body = append(body, 0x04, byte(len(priv)))
		body = append(body, priv...)
		body = append(body, extra...)
		return append([]byte{0x30, byte(len(body))}, body...)
	}
	seed := func(n int) []byte { return append([]byte{0x80, byte(n)}, make([]byte, n)...) }
	require.Equal(t, good, wrap(algID44, seed(32)), "test helper must rebuild the good encoding")

	tests := map[string]struct {
		der  []byte
		want error
	}{
		"seed of 31 bytes":  {wrap(algID44, seed(31)), mldsa.ErrMalformedPrivateKey},
		"seed of 33 bytes":  {wrap(algID44, seed(33)), mldsa.ErrMalformedPrivateKey},
		"explicit [0] seed": {wrap(algID44, append([]byte{0xa0, 0x22, 0x04, 0x20}, make([]byte, 32)...)), mldsa.ErrMalformedPrivateKey},
		"trailing byte in privateKey": {wrap(algID44, append(seed(32), 0x00)),
			mldsa.ErrMalformedPrivateKey},
		"NULL parameters": {wrap([]byte{0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x11, 0x05, 0x00}, seed(32)),
			mldsa.ErrParametersPresent},
		"HashML-DSA-44 OID": {wrap([]byte{0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x20}, seed(32)),
			mldsa.ErrHashMLDSA},
		"SLH-DSA OID": {wrap([]byte{0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x14}, seed(32)),
			mldsa.ErrNotMLDSA},
		"expandedKey of wrong size": {wrap(algID44, append([]byte{0x04, 0x20}, make([]byte, 32)...)), mldsa.ErrMalformedPrivateKey},
		"unknown CHOICE tag":        {wrap(algID44, append([]byte{0x81, 0x20}, make([]byte, 32)...)), mldsa.ErrMalformedPrivateKey},
		"trailing data after OneAsymmetricKey fields": {wrap(algID44, seed(32), 0x05, 0x00),
			mldsa.ErrMalformedPrivateKey},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := mldsa.ParsePKCS8PrivateKey(tc.der)
			require.ErrorIs(t, err, tc.want)
		})
	}
}

func TestParsePKCS8_ChecksV2PublicKey(t *testing.T) {
	sk, err := mldsa.NewKeyFromSeed(mldsa.MLDSA44, bytes.Repeat([]byte{7}, 32))
	require.NoError(t, err)
	other, err := mldsa.NewKeyFromSeed(mldsa.MLDSA44, bytes.Repeat([]byte{8}, 32))
	require.NoError(t, err)
	v2 := func(pub []byte) []byte {
		// SEQUENCE{ INTEGER 1, AlgId, OCTET STRING{[0] seed}, [1] BIT STRING pub }
		body := []byte{0x02, 0x01, 0x01, 0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x11,
			0x04, 0x22, 0x80, 0x20}
		body = append(body, sk.Seed()...)
		bits := append([]byte{0x00}, pub...)
		body = append(body, 0x81, 0x82, byte(len(bits)>>8), byte(len(bits)))
		body = append(body, bits...)
		return append([]byte{0x30, 0x82, byte(len(body) >> 8), byte(len(body))}, body...)
	}
	parsed, err := mldsa.ParsePKCS8PrivateKey(v2(sk.PublicKey().Bytes()))
	require.NoError(t, err)
	require.True(t, parsed.Equal(sk))
	_, err = mldsa.ParsePKCS8PrivateKey(v2(other.PublicKey().Bytes()))
	require.ErrorIs(t, err, mldsa.ErrPublicKeyMismatch)
}

func TestParsePKIXPublicKey_RejectsParametersAndForeignKeys(t *testing.T) {
	sk, err := mldsa.GenerateKey(mldsa.MLDSA44, nil)
	require.NoError(t, err)
	spki, err := mldsa.MarshalPKIXPublicKey(sk.PublicKey())
	require.NoError(t, err)

	_, err = mldsa.ParsePKIXPublicKey(spki[:len(spki)-1])
	require.Error(t, err)

	_, err = mldsa.ParsePublicKeyPEM([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	require.ErrorContains(t, err, `no "PUBLIC KEY" PEM block`)

	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ecSPKI, err := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	require.NoError(t, err)
	_, err = mldsa.ParsePKIXPublicKey(ecSPKI)
	require.ErrorIs(t, err, mldsa.ErrNotMLDSA)

	_, err = mldsa.NewPublicKey(mldsa.MLDSA65, sk.PublicKey().Bytes())
	require.ErrorContains(t, err, "ML-DSA-65 public key is 1312 bytes, want 1952")
}

// The CA signs from many goroutines with one key.
func TestSign_IsSafeForConcurrentUse(t *testing.T) {
	sk, err := mldsa.GenerateKey(mldsa.MLDSA65, nil)
	require.NoError(t, err)
	errs := make(chan error, 16)
	for i := range 16 {
		go func() {
			msg := []byte{byte(i)}
			sig, err := sk.Sign(nil, msg, crypto.Hash(0))
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

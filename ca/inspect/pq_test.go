package inspect_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/certenc"
	"github.com/meshca/meshca/ca/inspect"
	"github.com/meshca/meshca/ca/pqc"
	"github.com/meshca/meshca/ca/root"
)

func pqSigner(t *testing.T, alg string) certenc.AlgorithmSigner {
	t.Helper()
	k, err := pqc.GenerateKey(alg, nil)
	require.NoError(t, err)
	return k.(certenc.AlgorithmSigner)
}

func TestPostQuantum_NamesTheCatalystAlternativeKeyAndSignature(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	now := time.Now()
	c, err := root.NewRoot(root.CAKey{Signer: ec, Alt: pqSigner(t, "ML-DSA-65")}, "r", "o", time.Hour, now)
	require.NoError(t, err)
	var out bytes.Buffer
	require.NoError(t, inspect.Write(&out, root.EncodePEM(c), inspect.Options{Now: now, Describer: inspect.PostQuantum}))
	for _, line := range []string{
		"[1] Root CA certificate (self-signed)\n",
		"    Extension:             2.5.29.72 subjectAltPublicKeyInfo (ITU-T X.509 alternative public key), 1974 bytes\n",
		"    Post-quantum:          profile Catalyst hybrid (classical signature + alternative post-quantum signature)\n",
		"    Post-quantum:          alt public key (2.5.29.72, non-critical) ML-DSA-65 (2.16.840.1.101.3.4.3.18): 1952-byte public key, NIST category 3\n",
		"    Post-quantum:          alt signature (2.5.29.73/.74) ML-DSA-65 (2.16.840.1.101.3.4.3.18): pure ML-DSA, empty context, 3309-byte signature\n",
	} {
		require.Contains(t, out.String(), line)
	}
}

func TestWrite_NamesMLDSAAndCompositeAlgorithmsGoDoesNotKnow(t *testing.T) {
	now := time.Now()
	for alg, profileLine := range map[string]string{
		"ML-DSA-87":                 "profile pure ML-DSA",
		"MLDSA44-ECDSA-P256-SHA256": "profile composite ML-DSA",
	} {
		c, err := root.NewRoot(root.CAKey{Signer: pqSigner(t, alg)}, "r", "o", time.Hour, now)
		require.NoError(t, err)
		var out bytes.Buffer
		require.NoError(t, inspect.Write(&out, c.Raw, inspect.Options{Now: now, Describer: inspect.PostQuantum}))
		require.Contains(t, out.String(), "Root CA certificate (self-signed)\n", "self-signature checked with ca/pqc")
		require.Contains(t, out.String(), "    Public key:            "+alg+"\n")
		require.Contains(t, out.String(), "    Signature:             "+alg+"\n")
		require.Contains(t, out.String(), "    Post-quantum:          "+profileLine+"\n")
	}
}

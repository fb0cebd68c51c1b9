package verify_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/certenc"
	"github.com/meshca/meshca/ca/pqc"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/verify"
)

var now = time.Now()

func ec(t *testing.T) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return k
}

func pq(t *testing.T, alg string) certenc.AlgorithmSigner {
	t.Helper()
	k, err := pqc.GenerateKey(alg, nil)
	require.NoError(t, err)
	return k.(certenc.AlgorithmSigner)
}

// chain is root → intermediate → leaf, made the way meshca makes them.
type chain struct{ root, inter, leaf *x509.Certificate }

func (c chain) leafFirst() []*x509.Certificate { return []*x509.Certificate{c.leaf, c.inter, c.root} }

func build(t *testing.T, rk, ik root.CAKey) chain {
	t.Helper()
	r, err := root.NewRoot(rk, "test root", "o", 24*time.Hour, now)
	require.NoError(t, err)
	i, err := root.Mint(r, rk, ik, root.IntermediateTemplate{CommonName: "inter", Organization: "o", Lifetime: time.Hour}, now)
	require.NoError(t, err)
	id, _ := url.Parse("spiffe://cluster.local/ns/default/sa/app")
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42), NotBefore: now.Add(-time.Minute), NotAfter: now.Add(30 * time.Minute),
		URIs: []*url.URL{id}, KeyUsage: x509.KeyUsageDigitalSignature, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, AuthorityKeyId: i.SubjectKeyId, PublicKey: ec(t).Public(),
	}
	ct := &certenc.Template{Certificate: tmpl, Issuer: i.RawSubject}
	var der []byte
	if ik.Alt != nil {
		der, err = certenc.BuildCatalyst(ct, ik.Signer, certenc.Catalyst{Issuer: ik.Alt}, rand.Reader)
	} else {
		der, err = certenc.Build(ct, ik.Signer, rand.Reader)
	}
	require.NoError(t, err)
	l, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return chain{r, i, l}
}

func names(r *verify.Report) []string {
	var out []string
	for _, c := range r.Checks {
		status := "ok"
		switch {
		case c.Skipped != "":
			status = "skip"
		case c.Err != nil:
			status = "FAIL"
		}
		out = append(out, status+" "+c.Name)
	}
	return out
}

func TestChain_CatalystReportsEveryClassicalAndAltSignature(t *testing.T) {
	c := build(t, root.CAKey{Signer: ec(t), Alt: pq(t, "ML-DSA-65")}, root.CAKey{Signer: ec(t), Alt: pq(t, "ML-DSA-65")})
	rep := verify.Chain(c.leafFirst(), verify.Options{Roots: []*x509.Certificate{c.root}, PQ: true, Now: now})
	require.NoError(t, rep.Err())
	require.Equal(t, []string{
		"ok classical: chain[0] (spiffe://cluster.local/ns/default/sa/app) ECDSA-SHA256 signature by chain[1] (CN=inter,O=o)",
		"ok classical: chain[1] (CN=inter,O=o) ECDSA-SHA256 signature by chain[2] (CN=test root,O=o)",
		"ok classical: path validation up to 1 trusted root(s) (Go crypto/x509)",
		"ok pq: chain[0] (spiffe://cluster.local/ns/default/sa/app) alt signature (ML-DSA-65) by chain[1] (CN=inter,O=o)'s alt public key (2.5.29.72)",
		`ok pq: chain[1] (CN=inter,O=o) alt signature (ML-DSA-65) by trusted anchor "CN=test root,O=o"`,
		"ok pq: chain anchored at a trusted post-quantum key (1 trusted; pqc.VerifyChain)",
	}, names(rep))
	require.True(t, rep.Classical)
	require.True(t, rep.PostQuantum)

	// Without --pq only the classical checks run.
	require.Len(t, verify.Chain(c.leafFirst(), verify.Options{Roots: []*x509.Certificate{c.root}, Now: now}).Checks, 3)
}

func TestChain_CatalystUnderClassicalRootNeedsThePQAnchor(t *testing.T) {
	alt := pq(t, "ML-DSA-44")
	c := build(t, root.CAKey{Signer: ec(t)}, root.CAKey{Signer: ec(t), Alt: alt})
	opts := verify.Options{Roots: []*x509.Certificate{c.root}, PQ: true, Now: now}
	err := verify.Chain(c.leafFirst(), opts).Err()
	require.EqualError(t, err, "pq: trusted post-quantum keys: none: the trusted roots carry no ML-DSA or composite key; give meshca's pq-anchor.pem")

	spki, err2 := pqc.MarshalPKIXPublicKey(alt.Public())
	require.NoError(t, err2)
	a, err2 := pqc.AnchorFromPublicKeyInfo("pq-anchor.pem", spki)
	require.NoError(t, err2)
	opts.PQAnchors = []pqc.TrustAnchor{a}
	rep := verify.Chain(c.leafFirst(), opts)
	require.NoError(t, rep.Err())
	require.Contains(t, names(rep), `ok pq: chain[0] (spiffe://cluster.local/ns/default/sa/app) alt signature (ML-DSA-44) by trusted anchor "pq-anchor.pem"`)
}

func TestChain_CompositeAndMLDSAVerifyOnlyWithPQAndFailOnAFlippedByte(t *testing.T) {
	for _, alg := range []string{"MLDSA65-ECDSA-P256-SHA512", "ML-DSA-65"} {
		t.Run(alg, func(t *testing.T) {
			c := build(t, root.CAKey{Signer: pq(t, alg)}, root.CAKey{Signer: pq(t, alg)})
			opts := verify.Options{Roots: []*x509.Certificate{c.root}, Now: now}
			rep := verify.Chain(c.leafFirst(), opts)
			require.EqualError(t, rep.Err(), "nothing was verified (the chain has no classical signatures; verify it with --pq)")
			require.Equal(t, "skip classical chain (Go crypto/x509)", names(rep)[0])

			opts.PQ = true
			rep = verify.Chain(c.leafFirst(), opts)
			require.NoError(t, rep.Err())
			kind := "signature"
			if strings.HasPrefix(alg, "MLDSA") {
				kind = "composite signature (both components)"
			}
			require.Equal(t, []string{
				"skip classical chain (Go crypto/x509)",
				"ok pq: validity periods and CA constraints",
				"ok pq: chain[0] (spiffe://cluster.local/ns/default/sa/app) " + kind + " (" + alg + ") by chain[1] (CN=inter,O=o)'s public key",
				"ok pq: chain[1] (CN=inter,O=o) " + kind + " (" + alg + `) by trusted anchor "CN=test root,O=o"`,
				"ok pq: chain anchored at a trusted post-quantum key (1 trusted; pqc.VerifyChain)",
			}, names(rep))
			require.False(t, rep.Classical)
			require.True(t, rep.PostQuantum)

			der := append([]byte(nil), c.leaf.Raw...)
			der[len(der)-len(c.leaf.Signature)+7] ^= 0x01
			bad, err := x509.ParseCertificate(der)
			require.NoError(t, err)
			rep = verify.Chain([]*x509.Certificate{bad, c.inter}, opts)
			require.ErrorIs(t, rep.Err(), pqc.ErrInvalidSignature)
			require.Equal(t, "FAIL pq: chain[0] (spiffe://cluster.local/ns/default/sa/app) "+kind+" ("+alg+") by chain[1] (CN=inter,O=o)'s public key", names(rep)[2])

			late := opts
			late.Now = now.Add(2 * time.Hour)
			require.ErrorContains(t, verify.Chain(c.leafFirst(), late).Err(), "pq: validity periods and CA constraints: chain[0] expired at")
		})
	}
}

func TestChain_RootInTheChainFileIsNotTrusted(t *testing.T) {
	c := build(t, root.CAKey{Signer: ec(t), Alt: pq(t, "ML-DSA-65")}, root.CAKey{Signer: ec(t), Alt: pq(t, "ML-DSA-65")})
	stranger := build(t, root.CAKey{Signer: ec(t), Alt: pq(t, "ML-DSA-65")}, root.CAKey{Signer: ec(t)})
	rep := verify.Chain(c.leafFirst(), verify.Options{Roots: []*x509.Certificate{stranger.root}, PQ: true, Now: now})
	err := rep.Err()
	require.Error(t, err)
	// The trusted root has the same name but other keys: both chains fail.
	require.ErrorContains(t, err, "classical: path validation up to 1 trusted root(s) (Go crypto/x509): x509: certificate signed by unknown authority")
	require.ErrorIs(t, err, pqc.ErrInvalidSignature)
	require.ErrorContains(t, err, "pq: chain[1] (CN=inter,O=o) alt signature (ML-DSA-65) by chain[2] (CN=test root,O=o)'s alt public key (2.5.29.72): mldsa: signature does not verify")
}

func TestChain_ClassicalChainHasNothingPostQuantumToVerify(t *testing.T) {
	c := build(t, root.CAKey{Signer: ec(t)}, root.CAKey{Signer: ec(t)})
	rep := verify.Chain(c.leafFirst(), verify.Options{Roots: []*x509.Certificate{c.root}, PQ: true, Now: now})
	require.True(t, rep.Classical)
	require.False(t, rep.PostQuantum)
	require.ErrorIs(t, rep.Err(), pqc.ErrNoPQSignature)
	require.Equal(t, "FAIL pq: chain[0] (spiffe://cluster.local/ns/default/sa/app) post-quantum signature", names(rep)[3])
}

// TestChain_TwoTrustedRootsOfOneName: during a root rotation that keeps the
// root's name the trust bundle holds A and B. A chain under B verifies,
// and the report names B's signature, whichever order the bundle has.
// Before, the first root of the issuer's name was taken: with A first a
// chain under B failed "ECDSA verification failure" against A.
func TestChain_TwoTrustedRootsOfOneName(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  func() root.CAKey
		pq   bool
	}{
		{"classical", func() root.CAKey { return root.CAKey{Signer: ec(t)} }, false},
		{"catalyst", func() root.CAKey { return root.CAKey{Signer: ec(t), Alt: pq(t, "ML-DSA-44")} }, true},
		{"composite", func() root.CAKey { return root.CAKey{Signer: pq(t, "MLDSA44-ECDSA-P256-SHA256")} }, true},
		{"mldsa", func() root.CAKey { return root.CAKey{Signer: pq(t, "ML-DSA-44")} }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := build(t, tc.key(), tc.key())
			b := build(t, tc.key(), tc.key())
			require.Equal(t, a.root.Subject.String(), b.root.Subject.String())
			for _, roots := range [][]*x509.Certificate{{a.root, b.root}, {b.root, a.root}} {
				rep := verify.Chain(b.leafFirst(), verify.Options{Roots: roots, PQ: tc.pq, Now: now})
				require.NoError(t, rep.Err(), names(rep))
				require.Equal(t, tc.name != "composite" && tc.name != "mldsa", rep.Classical)
				require.Equal(t, tc.pq, rep.PostQuantum)
			}
			// A chain under neither still fails, naming the first root of
			// that name.
			stranger := build(t, tc.key(), tc.key())
			rep := verify.Chain(stranger.leafFirst(), verify.Options{Roots: []*x509.Certificate{a.root, b.root}, PQ: tc.pq, Now: now})
			require.Error(t, rep.Err())
		})
	}
}

// TestIssuedBy_TheKeyDecidesBetweenCAsOfOneName: root.IssuedBy, which
// meshca verify, the CRL builder and the Secret inventory share.
func TestIssuedBy_TheKeyDecidesBetweenCAsOfOneName(t *testing.T) {
	a := build(t, root.CAKey{Signer: ec(t)}, root.CAKey{Signer: ec(t)})
	b := build(t, root.CAKey{Signer: ec(t)}, root.CAKey{Signer: ec(t)})
	require.True(t, root.IssuedBy(b.inter, b.root))
	require.False(t, root.IssuedBy(b.inter, a.root), "same name, other key")
	require.False(t, root.IssuedBy(b.leaf, b.root), "another name")

	// A certificate naming B's key identifier but signed by A's key: the
	// identifier is public, the signature decides.
	forged := *b.inter
	forged.AuthorityKeyId = a.root.SubjectKeyId
	require.False(t, root.IssuedBy(&forged, a.root))

	m := build(t, root.CAKey{Signer: pq(t, "ML-DSA-44")}, root.CAKey{Signer: pq(t, "ML-DSA-44")})
	n := build(t, root.CAKey{Signer: pq(t, "ML-DSA-44")}, root.CAKey{Signer: pq(t, "ML-DSA-44")})
	require.True(t, root.IssuedBy(m.inter, m.root), "ML-DSA signatures through ca/pqc")
	require.False(t, root.IssuedBy(m.inter, n.root))
}

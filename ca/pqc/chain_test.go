package pqc

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"testing"

	"github.com/meshca/meshca/ca/pqc/composite"
	"github.com/meshca/meshca/ca/pqc/mldsa"
	"github.com/stretchr/testify/require"
)

func newEC(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return k
}

func newMLDSA(t *testing.T, p *mldsa.ParameterSet) *mldsa.PrivateKey {
	t.Helper()
	k, err := mldsa.GenerateKey(p, nil)
	require.NoError(t, err)
	return k
}

func newComposite(t *testing.T, a *composite.Algorithm) *composite.PrivateKey {
	t.Helper()
	k, err := composite.GenerateKey(a, nil)
	require.NoError(t, err)
	return k
}

func certs(cas ...*testCA) []*x509.Certificate {
	out := make([]*x509.Certificate, len(cas))
	for i, c := range cas {
		out[i] = c.cert
	}
	return out
}

func anchorOf(t *testing.T, c *testCA) TrustAnchor {
	t.Helper()
	a, err := AnchorFromCertificate(c.cert)
	require.NoError(t, err)
	return a
}

func spkiAnchor(t *testing.T, name string, pub crypto.PublicKey) TrustAnchor {
	t.Helper()
	spki, err := MarshalPKIXPublicKey(pub)
	require.NoError(t, err)
	a, err := AnchorFromPublicKeyInfo(name, spki)
	require.NoError(t, err)
	return a
}

// requireChainError asserts the failing certificate, the check and the
// cause of a VerifyChain error.
func requireChainError(t *testing.T, err error, index int, check string, cause error) {
	t.Helper()
	var ce *ChainError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, index, ce.Index, "failing certificate: %v", err)
	require.Contains(t, ce.Check, check)
	require.ErrorIs(t, err, cause)
}

// catalystChain is root (ECDSA + ML-DSA-87 alt) -> intermediate (ECDSA +
// ML-DSA-65 alt) -> leaf (ECDSA), all alternative-signed. With
// tamperLeaf, the leaf's alternative signature has one byte flipped.
func catalystChain(t *testing.T, tamperLeaf bool) (root, inter, leaf *testCA) {
	t.Helper()
	root = issueTestCert(t, certOpts{cn: "catalyst root", key: newEC(t), altKey: newMLDSA(t, mldsa.MLDSA87), altSign: true, ca: true})
	inter = issueTestCert(t, certOpts{cn: "catalyst intermediate", key: newEC(t), altKey: newMLDSA(t, mldsa.MLDSA65), issuer: root, altSign: true, ca: true})
	issuer := inter
	if tamperLeaf {
		issuer = &testCA{cert: inter.cert, key: inter.key,
			altKey: faultySigner{algorithmSigner: inter.altKey.(*mldsa.PrivateKey), offset: 10}}
	}
	leaf = issueTestCert(t, certOpts{cn: "workload", key: newEC(t), issuer: issuer, altSign: true})
	return root, inter, leaf
}

func TestVerifyChain_CatalystChainAnchoredAtRoot(t *testing.T) {
	root, inter, leaf := catalystChain(t, false)
	// The builder is sound: the classical chain verifies with crypto/x509.
	require.NoError(t, leaf.cert.CheckSignatureFrom(inter.cert))
	require.NoError(t, inter.cert.CheckSignatureFrom(root.cert))

	require.NoError(t, VerifyChain(certs(leaf, inter, root), anchorOf(t, root)))
	require.NoError(t, VerifyChain(certs(leaf, inter), anchorOf(t, root)), "the root need not be in the chain")
	require.NoError(t, VerifyAltSignature(leaf.cert, mustAltSPKI(t, inter.cert)))
}

func mustAltSPKI(t *testing.T, cert *x509.Certificate) []byte {
	t.Helper()
	c, err := ParseCatalyst(cert)
	require.NoError(t, err)
	require.NotNil(t, c)
	return c.SubjectAltPublicKeyInfo
}

func TestVerifyChain_RejectsTamperedLeafAltSignature(t *testing.T) {
	root, inter, leaf := catalystChain(t, true)
	require.NoError(t, leaf.cert.CheckSignatureFrom(inter.cert), "the classical signature is intact")
	err := VerifyChain(certs(leaf, inter, root), anchorOf(t, root))
	requireChainError(t, err, 0, "alt signature (ML-DSA-65) by chain[1]'s alt public key", ErrInvalidSignature)
	require.ErrorIs(t, err, mldsa.ErrInvalidSignature)
}

func TestVerifyChain_RejectsChainNotReachingAnchor(t *testing.T) {
	root, inter, leaf := catalystChain(t, false)
	stranger := spkiAnchor(t, "stranger", newMLDSA(t, mldsa.MLDSA87).Public())

	err := VerifyChain(certs(leaf, inter, root), stranger)
	requireChainError(t, err, 2, "alt signature (ML-DSA-87)", ErrNotAnchored)
	require.ErrorContains(t, err, "self-signed, but its key is not a trusted anchor")

	err = VerifyChain(certs(leaf, inter), stranger)
	requireChainError(t, err, 1, "alt signature (ML-DSA-87)", ErrNotAnchored)
	require.ErrorContains(t, err, "its issuer is not in the chain")

	require.ErrorIs(t, VerifyChain(certs(leaf, inter, root)), ErrNotAnchored, "no anchors at all")
}

// meshca's default: a classical enterprise root signs meshca's intermediate
// (which carries its ML-DSA key in 2.5.29.72 but no alternative signature);
// the PQ chain is anchored at that intermediate key.
func TestVerifyChain_AnchoredAtIntermediateMLDSAKeyUnderClassicalRoot(t *testing.T) {
	enterprise := issueTestCert(t, certOpts{cn: "enterprise root", key: newEC(t), ca: true})
	interAlt := newMLDSA(t, mldsa.MLDSA65)
	inter := issueTestCert(t, certOpts{cn: "meshca intermediate", key: newEC(t), altKey: interAlt, issuer: enterprise, ca: true})
	leaf := issueTestCert(t, certOpts{cn: "workload", key: newEC(t), issuer: inter, altSign: true})
	chain := certs(leaf, inter, enterprise)

	require.NoError(t, VerifyChain(chain, spkiAnchor(t, "meshca intermediate ML-DSA key", interAlt.Public())))
	require.NoError(t, VerifyChain(chain, anchorOf(t, inter)), "anchoring at the intermediate certificate uses its 2.5.29.72 key")

	_, err := AnchorFromCertificate(enterprise.cert)
	require.ErrorIs(t, err, ErrNoPQPublicKey, "a classical root without 2.5.29.72 cannot anchor the PQ chain")

	err = VerifyChain(chain, spkiAnchor(t, "stranger", newMLDSA(t, mldsa.MLDSA65).Public()))
	requireChainError(t, err, 1, "post-quantum signature", ErrNoPQSignature)
}

func TestVerifyChain_PureMLDSAChainVerifiesAndChecksIssuerNames(t *testing.T) {
	root := issueTestCert(t, certOpts{cn: "ml-dsa root", key: newMLDSA(t, mldsa.MLDSA87), ca: true})
	inter := issueTestCert(t, certOpts{cn: "ml-dsa intermediate", key: newMLDSA(t, mldsa.MLDSA65), issuer: root, ca: true})
	leaf := issueTestCert(t, certOpts{cn: "workload", key: newMLDSA(t, mldsa.MLDSA44), issuer: inter})

	require.NoError(t, VerifyChain(certs(leaf, inter, root), anchorOf(t, root)))
	require.NoError(t, VerifyChain(certs(leaf, inter), spkiAnchor(t, "intermediate", inter.key.Public())))
	require.NoError(t, VerifyCertificateSignature(leaf.cert, inter.cert.RawSubjectPublicKeyInfo))
	err := VerifyCertificateSignature(leaf.cert, root.cert.RawSubjectPublicKeyInfo)
	require.ErrorIs(t, err, ErrKeyAlgorithmMismatch, "an ML-DSA-65 signature cannot be checked with an ML-DSA-87 key")

	// A chain whose next certificate is not the issuer.
	other := issueTestCert(t, certOpts{cn: "other intermediate", key: newMLDSA(t, mldsa.MLDSA65), issuer: root, ca: true})
	err = VerifyChain(certs(leaf, other, root), anchorOf(t, root))
	requireChainError(t, err, 0, "issuer name", ErrIssuerMismatch)
}

func TestVerifyChain_CompositeChainNeedsBothComponents(t *testing.T) {
	root := issueTestCert(t, certOpts{cn: "composite root", key: newComposite(t, composite.MLDSA65ECDSAP256SHA512), ca: true})
	leafKey := newComposite(t, composite.MLDSA44ECDSAP256SHA256)
	leaf := issueTestCert(t, certOpts{cn: "workload", key: leafKey, issuer: root})
	require.NoError(t, VerifyChain(certs(leaf, root), anchorOf(t, root)))

	tests := map[string]struct {
		offset    int // from the end of the composite signature
		component error
	}{
		"broken ECDSA half":  {1, composite.ErrTraditionalComponent},
		"broken ML-DSA half": {200, composite.ErrMLDSAComponent},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			faulty := &testCA{cert: root.cert, key: faultySigner{algorithmSigner: root.key.(*composite.PrivateKey), offset: tc.offset}}
			bad := issueTestCert(t, certOpts{cn: "workload", key: leafKey, issuer: faulty})
			err := VerifyChain(certs(bad, root), anchorOf(t, root))
			requireChainError(t, err, 0, "signature (MLDSA65-ECDSA-P256-SHA512)", ErrInvalidSignature)
			require.ErrorIs(t, err, tc.component)
			require.ErrorIs(t, VerifyCertificateSignature(bad.cert, root.cert.RawSubjectPublicKeyInfo), tc.component)
		})
	}
}

func TestVerifyChain_RejectsClassicalLeafWithoutPQSignature(t *testing.T) {
	root, inter, _ := catalystChain(t, false)
	leaf := issueTestCert(t, certOpts{cn: "classical workload", key: newEC(t), issuer: inter})
	err := VerifyChain(certs(leaf, inter, root), anchorOf(t, root))
	requireChainError(t, err, 0, "post-quantum signature", ErrNoPQSignature)
}

func TestVerifyChainDER_ParsesAndVerifies(t *testing.T) {
	root, inter, leaf := catalystChain(t, false)
	require.NoError(t, VerifyChainDER([][]byte{leaf.cert.Raw, inter.cert.Raw, root.cert.Raw}, anchorOf(t, root)))
	err := VerifyChainDER([][]byte{leaf.cert.Raw, {0x30, 0x00}}, anchorOf(t, root))
	var ce *ChainError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, 1, ce.Index)
	require.Equal(t, "parse", ce.Check)
}

func TestAnchorFromPublicKeyInfo_RejectsClassicalKeys(t *testing.T) {
	spki, err := x509.MarshalPKIXPublicKey(&newEC(t).PublicKey)
	require.NoError(t, err)
	_, err = AnchorFromPublicKeyInfo("ecdsa", spki)
	require.ErrorIs(t, err, ErrNoPQPublicKey)
}

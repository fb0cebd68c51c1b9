package authority_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/zmap/zlint/v3/lint"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/caerr"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/pqc"
	"github.com/meshca/meshca/ca/pqc/composite"
	"github.com/meshca/meshca/ca/pqc/mldsa"
	"github.com/meshca/meshca/ca/profile"
)

func TestSign_CatalystChainVerifiesClassicallyWithGoAndOpenSSLAndPQWithVerifyChain(t *testing.T) {
	ca := newProfileCA(t, profile.Catalyst)
	c := ca.sign(t, "")
	m := ca.rt.Authority.Material()
	require.Equal(t, profile.Catalyst, m.Profile)
	require.True(t, c.inter.Equal(m.Bundle.Cert))

	// Classical: Go crypto/x509 and openssl -x509_strict, for each level.
	requireGoVerifies(t, c.rootC, c.rootC)
	requireGoVerifies(t, c.inter, c.rootC)
	requireGoVerifies(t, c.leaf, c.rootC, c.inter)
	requireOpenSSLStrict(t, c.rootC, c.rootC)
	requireOpenSSLStrict(t, c.inter, c.rootC)
	requireOpenSSLStrict(t, c.leaf, c.rootC, c.inter)

	// Post-quantum: the ML-DSA alternative chain up to the root's 2.5.29.72.
	require.NoError(t, pqc.VerifyChain([]*x509.Certificate{c.leaf, c.inter, c.rootC}, anchorOf(t, c.rootC)))
	rootAlt, err := pqc.ParseCatalyst(c.rootC)
	require.NoError(t, err)
	interAlt, err := pqc.ParseCatalyst(c.inter)
	require.NoError(t, err)
	require.NoError(t, pqc.VerifyAltSignature(c.rootC, rootAlt.SubjectAltPublicKeyInfo))
	require.NoError(t, pqc.VerifyAltSignature(c.inter, rootAlt.SubjectAltPublicKeyInfo))
	require.NoError(t, pqc.VerifyAltSignature(c.leaf, interAlt.SubjectAltPublicKeyInfo))
	require.ErrorIs(t, pqc.VerifyAltSignature(c.leaf, rootAlt.SubjectAltPublicKeyInfo), pqc.ErrInvalidSignature,
		"the leaf is alt-signed by the intermediate, not the root")

	// Exact extensions: all non-critical; .72 on the CA certificates only.
	for name, tc := range map[string]struct {
		cert *x509.Certificate
		ids  []string
	}{
		"root":         {c.rootC, []string{"2.5.29.72", "2.5.29.73", "2.5.29.74"}},
		"intermediate": {c.inter, []string{"2.5.29.72", "2.5.29.73", "2.5.29.74"}},
		"leaf":         {c.leaf, []string{"2.5.29.73", "2.5.29.74"}},
	} {
		exts := pqExtensions(tc.cert)
		require.Equal(t, tc.ids, extIDs(exts), name)
		for _, e := range exts {
			require.False(t, e.Critical, "%s: %s must be non-critical", name, e.Id)
		}
		var alg pkix.AlgorithmIdentifier
		rest, err := asn1.Unmarshal(exts[len(exts)-2].Value, &alg)
		require.NoError(t, err)
		require.Empty(t, rest)
		require.Equal(t, oidMLDSA["ML-DSA-65"], alg.Algorithm, name)
		require.Empty(t, alg.Parameters.FullBytes, "%s: ML-DSA parameters must be absent", name)
	}
	require.Len(t, interAlt.AltSignatureValue, 3309, "ML-DSA-65 signature")

	// Key identifiers are set explicitly and chain.
	require.Equal(t, c.inter.SubjectKeyId, c.leaf.AuthorityKeyId)
	require.Equal(t, c.rootC.SubjectKeyId, c.inter.AuthorityKeyId)
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		Key       asn1.BitString
	}
	_, err = asn1.Unmarshal(c.leaf.RawSubjectPublicKeyInfo, &spki)
	require.NoError(t, err)
	sum := sha256.Sum256(spki.Key.Bytes)
	require.Equal(t, sum[:20], c.leaf.SubjectKeyId)

	// The anchor is the root's ML-DSA key, published as pq-anchor.pem.
	require.False(t, m.PQAnchoredAtIntermediate())
	require.Len(t, m.PQAnchors(), 1)
	require.Equal(t, rootAlt.SubjectAltPublicKeyInfo, m.PQAnchors()[0].PublicKeyInfo())
	onDisk, err := os.ReadFile(pqAnchorFile(ca))
	require.NoError(t, err)
	require.Equal(t, m.PQAnchorsPEM(), onDisk)

	// The profile is recorded and audited.
	require.Equal(t, "catalyst", c.res.Record.Profile)
	require.Contains(t, ca.audit.String(), `"profile":"catalyst"`)
}

func TestSign_CatalystCAIssuesClassicalLeavesOnRequestAndRefusesForeignProfiles(t *testing.T) {
	ca := newProfileCA(t, profile.Catalyst)
	c := ca.sign(t, profile.Classical)
	require.Empty(t, pqExtensions(c.leaf), "a classical leaf carries no alternative signature")
	require.Equal(t, "classical", c.res.Record.Profile)
	requireOpenSSLStrict(t, c.leaf, c.rootC, c.inter)

	for _, p := range []profile.Name{profile.Composite, profile.MLDSA, "quantum"} {
		res, err := ca.rt.Authority.Sign(context.Background(), authority.Request{
			CSR: istioCSR(t, newKey(t, "p256"), workload), Identity: spiffe(t, workload), Profile: p,
		})
		require.Nil(t, res)
		require.Equal(t, caerr.InvalidArgument, caerr.CodeOf(err), err.Error())
		require.Equal(t, authority.ReasonProfileNotSupported, caerr.ReasonOf(err))
	}
	require.Equal(t, 1, countRecords(t, ca.rt.Store), "refusals write nothing")
}

func TestSign_CompositeAndMLDSALeavesVerifyOnlyWithEveryComponent(t *testing.T) {
	cases := map[string]struct {
		profile profile.Name
		alg     string
		mldsa   int // ML-DSA signature bytes at the start of the signature
	}{
		"composite MLDSA65-ECDSA-P256-SHA512": {profile.Composite, "MLDSA65-ECDSA-P256-SHA512", 3309},
		"composite MLDSA44-ECDSA-P256-SHA256": {profile.Composite, "MLDSA44-ECDSA-P256-SHA256", 2420},
		"mldsa ML-DSA-65":                     {profile.MLDSA, "ML-DSA-65", 3309},
		"mldsa ML-DSA-87":                     {profile.MLDSA, "ML-DSA-87", 4627},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			ca := newProfileCA(t, tc.profile, func(c *config.Config) { c.Intermediate.PQAlgorithm = tc.alg })
			c := ca.sign(t, "")
			require.Equal(t, string(tc.profile), c.res.Record.Profile)
			require.Equal(t, tc.alg, pqc.OIDName(sigAlgOID(t, c.leaf)))
			require.Equal(t, tc.alg, pqc.OIDName(sigAlgOID(t, c.inter)))
			require.Equal(t, tc.alg, pqc.OIDName(sigAlgOID(t, c.rootC)))
			require.ErrorIs(t, c.leaf.CheckSignatureFrom(c.inter), x509.ErrUnsupportedAlgorithm, "Go 1.26 cannot verify it")
			require.Empty(t, pqExtensions(c.leaf))

			chain := []*x509.Certificate{c.leaf, c.inter, c.rootC}
			anchor := anchorOf(t, c.rootC)
			require.NoError(t, pqc.VerifyChain(chain, anchor))
			require.False(t, ca.rt.Authority.Material().PQAnchoredAtIntermediate())

			// Flip a byte of the ML-DSA signature (composite: its ML-DSA
			// component), then of the composite's ECDSA component.
			offsets := []int{tc.mldsa / 2}
			if tc.profile == profile.Composite {
				require.Greater(t, len(c.leaf.Signature), tc.mldsa, "mldsaSig || ecdsaDER")
				offsets = append(offsets, len(c.leaf.Signature)-2)
			}
			for _, off := range offsets {
				bad := flipSignatureByte(t, c.leaf, off)
				err := pqc.VerifyChain([]*x509.Certificate{bad, c.inter, c.rootC}, anchor)
				require.ErrorIs(t, err, pqc.ErrInvalidSignature, "offset %d", off)
				var ce *pqc.ChainError
				require.True(t, errors.As(err, &ce))
				require.Equal(t, 0, ce.Index)
			}
		})
	}
}

func TestSign_CompositeSignatureFailsWhenEitherComponentIsWrong(t *testing.T) {
	ca := newProfileCA(t, profile.Composite)
	c := ca.sign(t, "")
	pub, err := pqc.ParsePKIXPublicKey(c.inter.RawSubjectPublicKeyInfo)
	require.NoError(t, err)
	ck := pub.(*composite.PublicKey)
	f := ca.rt.Authority.Material().Signer
	require.IsType(t, &composite.PrivateKey{}, f)
	require.NoError(t, ck.Verify(c.leaf.RawTBSCertificate, c.leaf.Signature))
	for _, off := range []int{10, 3309 + 8} {
		sig := bytes.Clone(c.leaf.Signature)
		sig[off] ^= 0x80
		require.ErrorIs(t, ck.Verify(c.leaf.RawTBSCertificate, sig), composite.ErrInvalidSignature, "offset %d", off)
	}
}

func TestLoad_ClassicalEnterpriseRootAnchorsThePQChainAtTheIntermediateKey(t *testing.T) {
	ca := newTestCA(t) // a classical root-cert.pem/root-key.pem, default (catalyst) profile
	m := ca.rt.Authority.Material()
	require.Equal(t, profile.Catalyst, m.Profile)
	require.True(t, m.PQAnchoredAtIntermediate())

	c := ca.sign(t, "")
	require.Empty(t, pqExtensions(c.rootC))
	require.Equal(t, []string{"2.5.29.72"}, extIDs(pqExtensions(c.inter)), "its own ML-DSA key, no alternative signature from the classical root")
	require.Equal(t, []string{"2.5.29.73", "2.5.29.74"}, extIDs(pqExtensions(c.leaf)))
	requireGoVerifies(t, c.leaf, c.rootC, c.inter)
	requireOpenSSLStrict(t, c.leaf, c.rootC, c.inter)

	// pq-anchor.pem is the intermediate's ML-DSA key, and the chain verifies under it.
	b, err := os.ReadFile(pqAnchorFile(ca))
	require.NoError(t, err)
	block, rest := pem.Decode(b)
	require.NotNil(t, block)
	require.Empty(t, rest)
	require.Equal(t, "PUBLIC KEY", block.Type)
	interAlt, err := pqc.ParseCatalyst(c.inter)
	require.NoError(t, err)
	require.Equal(t, interAlt.SubjectAltPublicKeyInfo, block.Bytes)
	anchor, err := pqc.AnchorFromPublicKeyInfo("pq-anchor.pem", block.Bytes)
	require.NoError(t, err)
	require.NoError(t, pqc.VerifyChain([]*x509.Certificate{c.leaf, c.inter, c.rootC}, anchor))

	_, err = pqc.AnchorFromCertificate(c.rootC)
	require.ErrorIs(t, err, pqc.ErrNoPQPublicKey, "the enterprise root has no post-quantum key to anchor at")
	other, err := pqc.AnchorFromCertificate(newProfileCA(t, profile.Catalyst).sign(t, "").rootC)
	require.NoError(t, err)
	require.ErrorIs(t, pqc.VerifyChain([]*x509.Certificate{c.leaf, c.inter, c.rootC}, other), pqc.ErrNoPQSignature,
		"without pq-anchor.pem the walk reaches the intermediate, which the classical root did not alt-sign")
}

func TestLoad_ReusesThePQGenerationAndMintsAgainWhenTheProfileChanges(t *testing.T) {
	ca := newProfileCA(t, profile.Catalyst)
	first := ca.rt.Authority.Material()
	require.NoError(t, ca.rt.Close())

	again := openCA(t, ca.dir, ca.cfg)
	m := again.rt.Authority.Material()
	require.Equal(t, first.Generation, m.Generation, "restart reuses the active generation")
	require.True(t, first.AltSigner.Public().(*mldsa.PublicKey).Equal(m.AltSigner.Public()))
	require.NoError(t, again.rt.Close())

	// intermediate.pqAlgorithm changes: a new intermediate with an ML-DSA-87 key.
	cfg87 := profileConfig(t, ca.dir, profile.Catalyst, func(c *config.Config) { c.Intermediate.PQAlgorithm = "ML-DSA-87" })
	ca87 := openCA(t, ca.dir, cfg87)
	m87 := ca87.rt.Authority.Material()
	require.Equal(t, first.Generation+1, m87.Generation)
	require.Equal(t, oidMLDSA["ML-DSA-87"], m87.AltSigner.SignatureAlgorithm().Algorithm)
	require.NoError(t, ca87.rt.Close())

	// Back to classical: a classical intermediate and no stale pq-anchor.pem.
	cfgC := profileConfig(t, ca.dir, profile.Classical)
	cl := openCA(t, ca.dir, cfgC)
	mc := cl.rt.Authority.Material()
	require.Equal(t, first.Generation+2, mc.Generation)
	require.Nil(t, mc.AltSigner)
	require.Empty(t, pqExtensions(mc.Bundle.Cert))
	_, err := os.Stat(pqAnchorFile(ca))
	require.ErrorIs(t, err, os.ErrNotExist)
	c := cl.sign(t, "")
	require.Equal(t, "classical", c.res.Record.Profile)
	gens, err := cl.rt.Store.ListGenerations(context.Background())
	require.NoError(t, err)
	require.Equal(t, []string{"catalyst", "catalyst", "classical"}, []string{gens[0].Profile, gens[1].Profile, gens[2].Profile})
	require.NotEmpty(t, gens[0].AltKeyRef)
	require.Empty(t, gens[2].AltKeyRef)
}

func TestLoad_RootMustSuitTheProfile(t *testing.T) {
	t.Run("composite CA under a classical root", func(t *testing.T) {
		dir := t.TempDir()
		cfg := profileConfig(t, dir, profile.Composite)
		writeRoot(t, cfg, 24*365*time.Hour)
		_, err := openServeCA(context.Background(), cfg, nil, nil)
		require.ErrorContains(t, err, "has a EC-P256 key; intermediate.profile composite needs a composite root (meshca init --profile composite creates one)")
	})
	t.Run("catalyst CA under an ML-DSA root", func(t *testing.T) {
		dir := t.TempDir()
		_, err := authority.CreateRoot(context.Background(), profileConfig(t, dir, profile.MLDSA), authority.RootRequest{CommonName: "r", Lifetime: time.Hour * 24})
		require.NoError(t, err)
		_, err = openServeCA(context.Background(), profileConfig(t, dir, profile.Catalyst), nil, nil)
		require.ErrorContains(t, err, "is a ML-DSA-65 root; intermediate.profile catalyst needs a classical root")
	})
	t.Run("Catalyst root without its ML-DSA key", func(t *testing.T) {
		dir := t.TempDir()
		cfg := profileConfig(t, dir, profile.Catalyst)
		_, err := authority.CreateRoot(context.Background(), cfg, authority.RootRequest{CommonName: "r", Lifetime: time.Hour * 24, KeyAlgorithm: "EC-P256"})
		require.NoError(t, err)
		require.NoError(t, os.Remove(cfg.Root.File.RootPQKey))
		_, err = openServeCA(context.Background(), cfg, nil, nil)
		require.ErrorContains(t, err, "root.file.rootPQKey: key file "+cfg.Root.File.RootPQKey+" does not exist")
	})
}

func TestIssueServing_CatalystCAAltSignsItsServingCertificate(t *testing.T) {
	ca := newProfileCA(t, profile.Catalyst)
	sv, err := ca.rt.Authority.IssueServing(context.Background(), newKey(t, "p256").Public(), []string{"meshca.istio-system.svc"}, nil, time.Hour)
	require.NoError(t, err)
	require.Equal(t, []string{"2.5.29.73", "2.5.29.74"}, extIDs(pqExtensions(sv.Leaf)))
	m := ca.rt.Authority.Material()
	require.NoError(t, pqc.VerifyChain(append(sv.Chain, m.Bundle.Roots[0]), m.PQAnchors()...))
	requireGoVerifies(t, sv.Leaf, m.Bundle.Roots[0], sv.Chain[1:]...)
}

func sigAlgOID(t *testing.T, c *x509.Certificate) asn1.ObjectIdentifier {
	t.Helper()
	d, err := pqc.Describe(c)
	require.NoError(t, err)
	return d.Signature.OID
}

func TestZLint_CatalystChainHasNoErrorsOrWarnings(t *testing.T) {
	c := newProfileCA(t, profile.Catalyst).sign(t, "")
	for what, cert := range map[string]*x509.Certificate{"leaf": c.leaf, "intermediate": c.inter} {
		var bad []string
		for name, r := range lintDER(t, cert.Raw) {
			if r.Status != lint.Warn && r.Status != lint.Error && r.Status != lint.Fatal {
				continue
			}
			if _, ok := webPKIOnly[name]; ok {
				continue
			}
			bad = append(bad, name+" ("+r.Status.String()+": "+r.Details+")")
		}
		sort.Strings(bad)
		require.Empty(t, bad, "%s: zlint findings", what)
	}
}

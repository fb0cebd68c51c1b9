package crl_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/crl"
)

// A signer with its own intermediate keeps an active generation of its
// own lineage beside the default's: revoking it, by number or by its
// serial, is refused like the default's; an unknown serial still goes on
// the default signer's active CRL, not on the newer named one.
func TestRevoker_ActiveGenerationOfEveryLineageIsRefused(t *testing.T) {
	p := newMgrPKI(t)
	ctx := context.Background()
	now := p.clk.Now()
	cert := p.mintCert(t, "Manager Test Intermediate signer alpha", buildP256(t))
	g, err := p.st.AddGeneration(ctx, store.Generation{CertDER: cert.Raw, ChainDER: [][]byte{p.root.Raw}, KeyRef: "test-alpha", Source: "file-minted", Signer: "alpha", CreatedAt: now})
	require.NoError(t, err)
	require.NoError(t, p.st.ActivateGeneration(ctx, g.ID, now))
	r := crl.NewRevoker(p.st, p.clk, nil)

	_, err = r.Revoke(ctx, crl.Request{Generation: g.ID})
	require.ErrorIs(t, err, crl.ErrActiveGeneration)
	_, err = r.Revoke(ctx, crl.Request{Serial: hex.EncodeToString(cert.SerialNumber.Bytes())})
	require.ErrorIs(t, err, crl.ErrActiveGeneration)
	_, err = r.Revoke(ctx, crl.Request{Generation: p.active})
	require.ErrorIs(t, err, crl.ErrActiveGeneration, "the default's active generation is still refused")
	require.Zero(t, lastSeq(t, p.st), "nothing is stored")

	recs, err := r.Revoke(ctx, crl.Request{Serial: "00DEADBEEF"})
	require.NoError(t, err)
	require.Len(t, recs, 1)
	require.Equal(t, p.active, recs[0].Generation, "an unknown serial goes on the default signer's CRL")
}

// A lineage that is no longer configured (a plug-in cluster or a signer
// removed) keeps its last generation active in the store, yet signs
// nothing: that generation may be revoked, by number or by its serial,
// while a lineage that runs, and the default signer, stay refused.
func TestRevoker_ActiveGenerationOfALineageNoLongerRunningMayBeRevoked(t *testing.T) {
	p := newMgrPKI(t)
	ctx := context.Background()
	now := p.clk.Now()
	gens := map[string]store.Generation{}
	for _, lineage := range []string{"cluster:east", "cluster:west"} {
		cert := p.mintCert(t, "Manager Test Intermediate "+lineage, buildP256(t))
		g, err := p.st.AddGeneration(ctx, store.Generation{CertDER: cert.Raw, ChainDER: [][]byte{p.root.Raw}, KeyRef: "test-" + lineage, Source: "file-minted", Signer: lineage, CreatedAt: now})
		require.NoError(t, err)
		require.NoError(t, p.st.ActivateGeneration(ctx, g.ID, now))
		gens[lineage] = g
	}
	r := crl.NewRevoker(p.st, p.clk, func(lineage string) bool { return lineage == "cluster:west" })

	_, err := r.Revoke(ctx, crl.Request{Generation: gens["cluster:west"].ID, Reason: store.ReasonCACompromise})
	require.ErrorIs(t, err, crl.ErrActiveGeneration, "west runs")
	_, err = r.Revoke(ctx, crl.Request{Generation: p.active, Reason: store.ReasonCACompromise})
	require.ErrorIs(t, err, crl.ErrActiveGeneration, "the default signer always runs")
	require.Zero(t, lastSeq(t, p.st))

	east, err := x509.ParseCertificate(gens["cluster:east"].CertDER)
	require.NoError(t, err)
	recs, err := r.Revoke(ctx, crl.Request{Serial: hex.EncodeToString(east.SerialNumber.Bytes()), Reason: store.ReasonCACompromise})
	require.NoError(t, err, "east was removed from the configuration")
	require.Equal(t, []store.Revocation{{
		Seq: 1, Serial: hex.EncodeToString(east.SerialNumber.Bytes()), Kind: store.KindIntermediate, Generation: gens["cluster:east"].ID, Known: true,
		NotAfter: east.NotAfter.UTC(), Reason: store.ReasonCACompromise, RevokedAt: p.clk.Now().UTC(),
	}}, recs, "the intermediate, for the root's CRL")
	_, err = r.Revoke(ctx, crl.Request{Generation: gens["cluster:east"].ID, Reason: store.ReasonCACompromise})
	require.NoError(t, err, "by number too (a second revocation of the same certificate is a no-op)")
}

// One certificate recorded twice (a pre-issued intermediate whose first
// record a lost Lease left prepared, the second activated): neither the
// prepared record's number nor the serial revokes the certificate that
// signs, and nothing is stored.
func TestRevoker_ACertificateRecordedTwiceIsRefusedWhileItSigns(t *testing.T) {
	p := newMgrPKI(t)
	ctx := context.Background()
	now := p.clk.Now()
	cert := p.mintCert(t, "Manager Test Intermediate pre-issued", buildP256(t))
	rec := store.Generation{CertDER: cert.Raw, ChainDER: [][]byte{p.root.Raw}, KeyRef: "cacerts/ca-key.pem", Source: "file-preissued", CreatedAt: now}
	first, err := p.st.AddGeneration(ctx, rec)
	require.NoError(t, err)
	second, err := p.st.AddGeneration(ctx, rec)
	require.NoError(t, err)
	require.NoError(t, p.st.ActivateGeneration(ctx, second.ID, now))
	gens, err := p.st.ListGenerations(ctx)
	require.NoError(t, err)
	require.Equal(t, store.StatePrepared, store.States(gens)[first.ID], "the certificate in use is never abandoned")

	r := crl.NewRevoker(p.st, p.clk, nil)
	_, err = r.Revoke(ctx, crl.Request{Generation: first.ID, Reason: store.ReasonSuperseded})
	require.ErrorIs(t, err, crl.ErrActiveGeneration)
	require.ErrorContains(t, err, fmt.Sprintf("generation %d records the same intermediate certificate as generation %d", first.ID, second.ID))
	_, err = r.Revoke(ctx, crl.Request{Serial: hex.EncodeToString(cert.SerialNumber.Bytes()), Reason: store.ReasonSuperseded})
	require.ErrorIs(t, err, crl.ErrActiveGeneration)
	require.ErrorContains(t, err, fmt.Sprintf("the intermediate certificate of generation %d", second.ID))
	require.Zero(t, lastSeq(t, p.st), "nothing is stored")
}

// Serials are unique per issuer only (RFC 5280 section 4.1.2.2): two
// enterprise CAs may have issued pre-issued intermediates with one serial.
// meshca records one revocation per serial, so it refuses a --serial that
// names both, and refuses to revoke the second rather than hand back the
// first one's record as if the second's were stored. The same certificate
// recorded twice is still one revocation.
func TestRevoker_TwoIntermediatesOfOneSerialAreNotConfused(t *testing.T) {
	p := newMgrPKI(t)
	ctx := context.Background()
	now := p.clk.Now()
	a := p.mintCert(t, "Enterprise Intermediate A", buildP256(t))
	otherKey := buildP256(t)
	otherRoot, err := root.NewSelfSignedRoot(otherKey, "Other Enterprise Root", "other", 10*365*24*time.Hour, now)
	require.NoError(t, err)
	tmpl := *a
	tmpl.RawSubject, tmpl.Subject.CommonName = nil, "Enterprise Intermediate B"
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, otherRoot, buildP256(t).Public(), otherKey)
	require.NoError(t, err)
	b, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	require.Equal(t, a.SerialNumber, b.SerialNumber)
	add := func(c, issuer *x509.Certificate) store.Generation {
		g, err := p.st.AddGeneration(ctx, store.Generation{CertDER: c.Raw, ChainDER: [][]byte{issuer.Raw}, KeyRef: "cacerts/ca-key.pem", Source: "file-preissued", CreatedAt: now})
		require.NoError(t, err)
		return g
	}
	ga, gb := add(a, p.root), add(b, otherRoot)
	serial := hex.EncodeToString(a.SerialNumber.Bytes())
	r := crl.NewRevoker(p.st, p.clk, nil)

	_, err = r.Revoke(ctx, crl.Request{Serial: serial, Reason: store.ReasonSuperseded})
	require.ErrorIs(t, err, crl.ErrInvalidRequest)
	require.EqualError(t, err, fmt.Sprintf("invalid revocation request: serial %s is the serial of two different intermediate certificates, those of generations %d and %d (issued by different CAs); name the one to revoke: meshca revoke --generation N", serial, ga.ID, gb.ID))
	require.Zero(t, lastSeq(t, p.st), "nothing is stored")

	recs, err := r.Revoke(ctx, crl.Request{Generation: ga.ID, Reason: store.ReasonSuperseded})
	require.NoError(t, err)
	require.Len(t, recs, 1)
	require.Equal(t, ga.ID, recs[0].Generation)
	_, err = r.Revoke(ctx, crl.Request{Generation: gb.ID, Reason: store.ReasonKeyCompromise})
	require.ErrorIs(t, err, crl.ErrInvalidRequest)
	require.EqualError(t, err, fmt.Sprintf("invalid revocation request: the intermediate certificate of generation %d (serial %s) has the serial of generation %d's, a different CA certificate already revoked (seq %d); meshca records one revocation per serial, so it cannot record this one: "+
		"stop trusting generation %d by removing its intermediate from every trust bundle, or revoke it at the root's CA", gb.ID, serial, ga.ID, recs[0].Seq, gb.ID))
	require.Equal(t, recs[0].Seq, lastSeq(t, p.st), "nothing more is stored")

	again := add(a, p.root) // a recorded twice
	got, err := r.Revoke(ctx, crl.Request{Generation: again.ID, Reason: store.ReasonSuperseded})
	require.NoError(t, err)
	want := recs[0]
	want.Existing = true
	require.Equal(t, []store.Revocation{want}, got, "the original record")
}

package istio_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
)

// TestCertSigner_SeparateIntermediate: a signer with its own intermediate
// issues under ITS intermediate (another certificate than the default's,
// of its own signer lineage in the store), both chains verify to the same
// root, and the issuance record names the generation that signed.
func TestCertSigner_SeparateIntermediate(t *testing.T) {
	engines := map[string]*authority.Authority{}
	e := newEnv(t, envOptions{certSigners: []config.CertSignerConfig{gatewaySigner(false)}, separate: []string{"gateways"}, engines: engines})
	id := spiffeID("gw", "ingress")
	cert := e.clientCert(t, id)
	c := e.dial(t, func(cfg *tls.Config) { cfg.Certificates = []tls.Certificate{cert} })

	issue := func(signer string) (leaf *x509.Certificate, inter *x509.Certificate) {
		t.Helper()
		csr, _ := agentCSR(t, id)
		resp, err := c.CreateCertificate(context.Background(), request(t, csr, 3600, map[string]any{"CertSigner": signer}))
		require.NoError(t, err)
		leaf, roots := parseAsIstioAgent(t, resp.GetCertChain())
		require.Len(t, roots, 1)
		require.Len(t, resp.GetCertChain(), 3, "leaf, intermediate, root")
		inters, err := root.ParseCertificates([]byte(resp.GetCertChain()[1]))
		require.NoError(t, err)
		require.Len(t, inters, 1)
		inter = inters[0]
		ip := x509.NewCertPool()
		ip.AddCert(inter)
		_, err = leaf.Verify(x509.VerifyOptions{Roots: e.roots, Intermediates: ip, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		require.NoError(t, err, "%s: the chain verifies to the mesh root", signer)
		require.NoError(t, leaf.CheckSignatureFrom(inter), "%s: the leaf is signed by the intermediate in its chain", signer)
		return leaf, inter
	}
	_, defInter := issue("")
	gwLeaf, gwInter := issue("gateways")
	require.NotEqual(t, defInter.Raw, gwInter.Raw, "the separate signer has its own intermediate")
	require.Equal(t, e.rt.Authority.Material().Bundle.Cert.Raw, defInter.Raw)
	gwMat := engines["gateways"].Material()
	require.Equal(t, gwMat.Bundle.Cert.Raw, gwInter.Raw, "the gateways leaf chains to the gateways intermediate")
	require.Contains(t, gwInter.Subject.CommonName, " signer gateways")

	gens, err := e.rt.Store.ListGenerations(context.Background())
	require.NoError(t, err)
	var gwGen store.Generation
	for _, g := range gens {
		if g.ID == gwMat.Generation {
			gwGen = g
		}
	}
	require.Equal(t, "gateways", gwGen.Signer)
	require.True(t, gwGen.Active())
	rec, err := e.rt.Store.GetIssuance(context.Background(), hex.EncodeToString(gwLeaf.SerialNumber.Bytes()))
	require.NoError(t, err)
	require.Equal(t, gwMat.Generation, rec.Generation, "the record names the gateways generation")
}

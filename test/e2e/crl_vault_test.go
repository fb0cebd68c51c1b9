package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// colonHex is a serial as Vault's revoke endpoint takes it (aa:bb:...).
func colonHex(s string) string {
	var parts []string
	for i := 0; i < len(s); i += 2 {
		parts = append(parts, s[i:i+2])
	}
	return strings.Join(parts, ":")
}

// A Vault root: ca-crl.pem holds meshca's CRL and the Vault mount's CRL
// (the root side, which meshca fetches and publishes). openssl verify
// -crl_check_all with exactly the ConfigMap's and the Secret's ca-crl.pem,
// read back from the apiserver, accepts a good leaf and rejects a leaf
// meshca revoked; once meshca's intermediate is revoked in Vault (the
// root side of a generation revocation for a Vault-backed root), it rejects
// every leaf of that generation.
func TestCRL_VaultRootCaCRLInTheClusterVerifiesWithOpenSSL(t *testing.T) {
	const mount = "pki-crl"
	vr := startVaultRoots(t, mount)
	v := vr.v
	var err error
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	c := newCRLCluster(t)
	dir := vr.caDir(t, mount, "    crlRefreshInterval: 1s\n", c.yaml())

	s := startServe(t, dir)
	s.waitReady(t, 10*time.Second)
	good := signLeaf(t, dir, workloadID)
	bad := signLeaf(t, dir, "spiffe://cluster.local/ns/shop/sa/stolen")
	root := good[2]
	waitFor(t, 10*time.Second, "ca-crl.pem in the ConfigMap", func() bool { return len(c.configMapCRL(t, "shop")) > 0 })
	requireVerdicts(t, "ConfigMap, nothing revoked", c.configMapCRL(t, "shop"), root, map[string]verdict{
		"good leaf": {good, true}, "leaf to be revoked": {bad, true},
	})

	meshca(t, "revoke", "--dir", dir, "--serial", serialOf(bad[0]), "--reason", "keyCompromise")
	waitFor(t, 10*time.Second, "the revoked leaf in the ConfigMap", func() bool {
		_, ok := opensslVerifyCRLs(t, c.configMapCRL(t, "shop"), root, bad[1], bad[0])
		return !ok
	})
	cases := map[string]verdict{"good leaf": {good, true}, "revoked leaf": {bad, false}}
	requireVerdicts(t, "istio-ca-crl ConfigMap", c.configMapCRL(t, "shop"), root, cases)
	waitFor(t, 10*time.Second, "the Secret follows", func() bool { return string(c.secretCRL(t)) == string(c.configMapCRL(t, "shop")) })
	requireVerdicts(t, "cacerts Secret", c.secretCRL(t), root, cases)

	// The root side: the operator revokes meshca's intermediate in Vault
	// (meshca records a generation revocation for a Vault root, and the
	// Vault mount's CRL is what lists it). meshca picks up the new CRL.
	_, err = v.Client.Logical().WriteWithContext(ctx, mount+"/revoke", map[string]any{"serial_number": colonHex(serialOf(good[1]))})
	require.NoError(t, err)
	waitFor(t, 15*time.Second, "Vault's new CRL in the ConfigMap", func() bool {
		_, ok := opensslVerifyCRLs(t, c.configMapCRL(t, "shop"), root, good[1], good[0])
		return !ok
	})
	cases = map[string]verdict{"leaf of the revoked intermediate": {good, false}, "revoked leaf": {bad, false}}
	requireVerdicts(t, "istio-ca-crl ConfigMap", c.configMapCRL(t, "shop"), root, cases)
	waitFor(t, 10*time.Second, "the Secret follows", func() bool { return string(c.secretCRL(t)) == string(c.configMapCRL(t, "shop")) })
	requireVerdicts(t, "cacerts Secret", c.secretCRL(t), root, cases)
}

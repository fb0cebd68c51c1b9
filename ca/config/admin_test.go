package config_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/config"
)

func TestAdminListen_OffByDefaultAndValidated(t *testing.T) {
	base := "root: {file: {rootCert: r.pem, rootKey: r.key}}\nkeyStore: {dir: keys}\nstore: {path: s.db}\n"
	cfg, err := config.Parse([]byte(base))
	require.NoError(t, err)
	require.NoError(t, cfg.Validate())
	require.Empty(t, cfg.Server.AdminListen, "off by default")
	require.Equal(t, []string{"meshca-admin"}, cfg.Server.AdminTokenAudiences)

	cfg, err = config.Parse([]byte(base + "server:\n  adminListen: \":15443\"\n  adminIdentities: [spiffe://cluster.local/ns/ops/sa/alice]\n"))
	require.NoError(t, err)
	require.NoError(t, cfg.Validate())

	for extra, want := range map[string]string{
		"server: {adminListen: \"15443\", adminIdentities: [spiffe://cluster.local/ns/ops/sa/a]}":  `server.adminListen: "15443" is not host:port (e.g. :15443); leave it empty to serve the admin API on server.adminSocket only`,
		"server: {adminListen: \":15012\", adminIdentities: [spiffe://cluster.local/ns/ops/sa/a]}": `server.adminListen: ":15012" is also server.listen; give the admin API its own port`,
		"server: {adminListen: \":15443\"}":                              "server.adminListen: no one could use it: list admin SPIFFE IDs in server.adminIdentities (mTLS with certificates meshca issues), or configure kubernetes (kubeconfig or inCluster) for Kubernetes tokens authorized by RBAC on meshca.io resources",
		"server: {adminIdentities: [spiffe://evil.example/ns/ops/sa/a]}": `server.adminIdentities: "spiffe://evil.example/ns/ops/sa/a": `,
		"server: {adminTokenAudiences: [\"\"]}":                          "server.adminTokenAudiences: must not hold an empty audience (default [meshca-admin])",
	} {
		cfg, err := config.Parse([]byte(base + extra))
		require.NoError(t, err, extra)
		require.ErrorContains(t, cfg.Validate(), want, extra)
	}
}

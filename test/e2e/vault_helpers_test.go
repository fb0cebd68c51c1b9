package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/test/vaultenv"
)

// vaultRoots is a real Vault with one PKI mount per enterprise root
// ("Enterprise Root "+name of each mount, ECDSA P-256, ten years) and its
// root token in a file, as root.vault.auth.tokenFile reads it.
type vaultRoots struct {
	v         *vaultenv.Env
	tokenFile string
}

func startVaultRoots(t *testing.T, mounts ...string) *vaultRoots {
	t.Helper()
	v, err := vaultenv.Start()
	require.NoError(t, err)
	t.Cleanup(v.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, m := range mounts {
		require.NoError(t, v.Client.Sys().MountWithContext(ctx, m, &vaultapi.MountInput{
			Type: "pki", Config: vaultapi.MountConfigInput{MaxLeaseTTL: "87600h"},
		}))
		_, err = v.Client.Logical().WriteWithContext(ctx, m+"/root/generate/internal", map[string]any{
			"common_name": "Enterprise Root " + m, "key_type": "ec", "key_bits": 256, "ttl": "87600h",
		})
		require.NoError(t, err)
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte(v.RootToken), 0o600))
	return &vaultRoots{v: v, tokenFile: tokenFile}
}

// caDir writes a CA directory whose meshca.yaml takes its root from
// mount, with vaultExtra under root.vault (indented four spaces), the
// softkms key store and the bbolt store, then rest; it returns the
// directory.
func (vr *vaultRoots) caDir(t *testing.T, mount, vaultExtra, rest string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca")
	require.NoError(t, os.MkdirAll(dir, 0o700))
	cfg := vr.rootSection(mount) + vaultExtra + "keyStore: {type: softkms, dir: keys}\nstore: {path: meshca.db}\n" + rest
	require.NoError(t, os.WriteFile(filepath.Join(dir, "meshca.yaml"), []byte(cfg), 0o644))
	return dir
}

// rootSection is the root: section of meshca.yaml for mount.
func (vr *vaultRoots) rootSection(mount string) string {
	return fmt.Sprintf("root:\n  source: vault\n  vault:\n    address: %s\n    mount: %s\n    auth: {method: token, tokenFile: %s}\n", vr.v.Addr, mount, vr.tokenFile)
}

package rootrotation

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/store"
)

// OfflineHint speaks only when the journal explains the failure: a
// rotation past its switch, and a configuration that names neither B's
// files nor a copy of B.
func TestOfflineHint_OnlyWhenTheConfigurationStillNamesTheOldRoot(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	require.Empty(t, OfflineHint(ctx, h.st, h.a.spec), "no rotation")

	h.start()
	require.Empty(t, OfflineHint(ctx, h.st, h.a.spec), "before the switch A still signs")

	rec := h.journal()
	rec.Phase = string(PhaseDone)
	require.NoError(t, h.st.PutRootRotation(ctx, rec, store.Fence{}))
	hint := OfflineHint(ctx, h.st, h.a.spec)
	require.Equal(t, "root rotation "+rec.ID+" is done: the active intermediate chains to its new root (file "+h.b.spec.File.RootCert+"), but this configuration still names the old one (file "+h.a.spec.File.RootCert+
		"), and only a running meshca serve follows the rotation's journal. Update the configuration (set root.file.rootCert "+h.b.spec.File.RootCert+" and root.file.rootKey "+h.b.spec.File.RootKey+"), or run this command while meshca serve runs", hint)
	require.Empty(t, OfflineHint(ctx, h.st, h.b.spec), "the configuration names B")

	// B's files copied over another path: the configuration names B too.
	dir := t.TempDir()
	b, err := os.ReadFile(h.b.spec.File.RootCert)
	require.NoError(t, err)
	copied := config.RootConfig{Source: config.RootSourceFile, File: config.FileRootConfig{RootCert: filepath.Join(dir, "root-cert.pem"), RootKey: filepath.Join(dir, "root-key.pem")}}
	require.NoError(t, os.WriteFile(copied.File.RootCert, b, 0o644))
	require.Empty(t, OfflineHint(ctx, h.st, copied))
}

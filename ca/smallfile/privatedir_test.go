package smallfile

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// The mode in the refusal is the directory's as chmod(1) and ls(1) show
// it: a sticky, world-writable directory such as /tmp is 1777, not 0777.
func TestCheckPrivateDir_NamesTheModeAsChmodWouldSetIt(t *testing.T) {
	for _, tc := range []struct {
		mode os.FileMode
		want string
	}{
		{0o777, "0777"},
		{0o777 | os.ModeSticky, "1777"},
		{0o777 | os.ModeSetgid, "2777"},
		{0o707 | os.ModeSetgid | os.ModeSticky, "3707"},
	} {
		dir := filepath.Join(t.TempDir(), "d")
		require.NoError(t, os.Mkdir(dir, 0o700))
		require.NoError(t, os.Chmod(dir, tc.mode))
		err := CheckPrivateDir(dir, "server.adminSocket's directory", "choose another")
		require.EqualError(t, err, "server.adminSocket's directory "+dir+" is writable by others (mode "+tc.want+"); run chmod o-w "+dir+", or choose another")
	}
	dir := t.TempDir()
	require.NoError(t, os.Chmod(dir, 0o770|os.ModeSticky))
	require.NoError(t, CheckPrivateDir(dir, "x", "y"), "sticky, not writable by others")
}

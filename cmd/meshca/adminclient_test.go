package main

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/config"
)

// liveServe asks a listening admin socket only in a directory that nobody
// else may write (as serve binds it only there): a socket that another
// user could have put in place must not stand in for the store.
func TestLiveServe_OnlyASocketInAPrivateDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	require.NoError(t, os.Mkdir(dir, 0o700))
	sock := filepath.Join(dir, "admin.sock")
	l, err := net.Listen("unix", sock)
	require.NoError(t, err)
	defer l.Close()
	cfg := &config.Config{}
	cfg.Server.AdminSocket = sock

	c, ok := liveServe(cfg)
	require.True(t, ok, "a listening socket in a private directory")
	require.NoError(t, c.Close())

	require.NoError(t, os.Chmod(dir, 0o777))
	_, ok = liveServe(cfg)
	require.False(t, ok, "a directory others may write")

	require.NoError(t, os.Chmod(dir, 0o700))
	require.NoError(t, l.Close())
	_, ok = liveServe(cfg)
	require.False(t, ok, "nobody listens")
}

package main

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/store/boltstore"
)

// runningServe takes a bbolt store's admin socket for a running serve only
// while another process holds the store, as a store Open finds locked
// shows, but without Open's 2 s lock timeout: a socket that answers next
// to a store nobody holds does not stand in for the store. For PostgreSQL
// the socket answering is enough where the caller says so.
func TestRunningServe_OnlyWhileTheStoreIsHeld(t *testing.T) {
	dir := t.TempDir()
	cfg := &config.Config{}
	cfg.Store.Type = config.StoreBolt
	cfg.Store.Path = filepath.Join(dir, "meshca.db")
	cfg.Server.AdminSocket = filepath.Join(dir, "admin.sock")
	st, err := boltstore.Open(cfg.Store.Path)
	require.NoError(t, err)
	require.NoError(t, st.Close())
	l, err := net.Listen("unix", cfg.Server.AdminSocket)
	require.NoError(t, err)
	defer l.Close()

	_, ok := runningServe(cfg, true)
	require.False(t, ok, "a socket answers, but nobody holds the store")

	st, err = boltstore.Open(cfg.Store.Path)
	require.NoError(t, err)
	c, ok := runningServe(cfg, false)
	require.True(t, ok, "the store is held and the socket answers")
	require.NoError(t, c.Close())
	require.NoError(t, os.Remove(cfg.Server.AdminSocket))
	_, ok = runningServe(cfg, true)
	require.False(t, ok, "the store is held, but no socket answers")
	require.NoError(t, st.Close())

	pg := &config.Config{}
	pg.Store.Type = config.StorePostgres
	pg.Server.AdminSocket = filepath.Join(dir, "pg.sock")
	l2, err := net.Listen("unix", pg.Server.AdminSocket)
	require.NoError(t, err)
	defer l2.Close()
	c, ok = runningServe(pg, true)
	require.True(t, ok, "PostgreSQL: the socket answering is enough")
	require.NoError(t, c.Close())
	_, ok = runningServe(pg, false)
	require.False(t, ok, "PostgreSQL, where the caller opens the store itself")
}

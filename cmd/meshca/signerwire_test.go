package main

import (
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/profile"
)

// A separate signer under a classical root with a post-quantum profile is
// refused before its intermediate is minted: the post-quantum chain is
// anchored at the default intermediate itself (pq-anchor.pem), which would
// not verify the signer's leaves.
func TestSignerLineages_RefusedWhenThePQAnchorIsTheIntermediate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	_, err := runMeshca(t, "init", "--dir", dir, "--profile", "classical")
	require.NoError(t, err)
	cfg := config.Defaults(dir)
	require.Equal(t, profile.Catalyst, cfg.Intermediate.Profile, "the default profile under a classical root")
	cfg.Authentication.CertSigners = []config.CertSignerConfig{{Name: "gateways", Intermediate: config.CertSignerIntermediateConfig{Separate: true}}}
	cfg.Init()
	require.NoError(t, cfg.Validate())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rt, rot, err := openCA(t.Context(), cfg, log, nil)
	require.NoError(t, err)
	t.Cleanup(func() { rt.Close() })
	require.True(t, rt.Authority.Material().PQAnchoredAtIntermediate())

	_, err = openSignerLineages(t.Context(), cfg, rt, rot, log, nil)
	require.ErrorContains(t, err, "authentication.certSigners gateways: intermediate.separate needs a root that carries the post-quantum trust anchor")
	gens, err := rt.Store.ListGenerations(t.Context())
	require.NoError(t, err)
	for _, g := range gens {
		require.Empty(t, g.Signer, "nothing was minted for the refused signer")
	}
}

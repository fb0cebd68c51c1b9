package intermediate

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"log/slog"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/crl"
)

const abandonedMsg = "a CA generation was prepared but never activated, and never will be"

// A generation prepared before a newer one of its lineage was activated
// (its holder lost the Lease while preparing it) is abandoned: it is never
// resumed, and the Lease holder reports it once, with the action that
// retires it, until it is revoked.
func TestManager_AbandonedGenerationIsReportedOnceUntilRevoked(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	first, err := f.m.Start(ctx)
	require.NoError(t, err)
	orphan, err := f.m.mint(ctx) // prepared by a holder that then lost the Lease
	require.NoError(t, err)
	newer, err := f.m.mint(ctx) // the next holder's, which it activated
	require.NoError(t, err)
	require.NoError(t, f.st.ActivateGeneration(ctx, newer.ID, f.clk.Now()))
	gens, err := f.st.ListGenerations(ctx)
	require.NoError(t, err)
	require.Equal(t, map[uint64]store.GenerationState{first.Generation: store.StateRetired, orphan.ID: store.StateAbandoned, newer.ID: store.StateActive},
		store.States(gens))

	var logs bytes.Buffer
	start := func() *Manager {
		t.Helper()
		m := New(Options{Config: f.cfg, Keys: f.km, Store: f.st, Root: f.src, Clock: f.clk, Log: slog.New(slog.NewJSONHandler(&logs, nil))})
		mat, err := m.Start(ctx)
		require.NoError(t, err)
		require.Equal(t, newer.ID, mat.Generation)
		require.Nil(t, m.next, "an abandoned generation is never resumed")
		return m
	}
	m := start()
	require.Equal(t, 1, strings.Count(logs.String(), abandonedMsg), logs.String())
	require.Contains(t, logs.String(), `"generation":`+uitoa(orphan.ID)+`,`)
	require.Contains(t, logs.String(), `"action":"meshca revoke --generation `+uitoa(orphan.ID)+` --reason superseded; then delete the keys named by key_ref and alt_key_ref"`)
	require.Contains(t, logs.String(), `"key_ref":"`+orphan.KeyRef+`"`)
	orphanCert, err := x509.ParseCertificate(orphan.CertDER)
	require.NoError(t, err)
	require.Contains(t, logs.String(), `"serial":"`+hex.EncodeToString(orphanCert.SerialNumber.Bytes())+`"`)
	_, err = m.preparedSuccessor(ctx, newer.ID, m.Active().Bundle.Roots)
	require.NoError(t, err)
	require.Equal(t, 1, strings.Count(logs.String(), abandonedMsg), "reported once per process")

	// Revoked (as 'meshca revoke --generation' does): no longer reported.
	_, err = crl.NewRevoker(f.st, f.clk, nil).Revoke(ctx, crl.Request{Generation: orphan.ID, Reason: store.ReasonSuperseded, Requester: "test"})
	require.NoError(t, err)
	logs.Reset()
	start()
	require.NotContains(t, logs.String(), abandonedMsg)
}

func uitoa(v uint64) string { return strconv.FormatUint(v, 10) }

// RotateNow mints a fresh successor and passes over the prepared one: that
// one is abandoned by the activation, and the holder says so then, not at
// its next rotation weeks later.
func TestManager_RotateNowWarnsOfThePreparedGenerationItPassesOver(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	var logs bytes.Buffer
	m := New(Options{Config: f.cfg, Keys: f.km, Store: f.st, Root: f.src, Clock: f.clk, Log: slog.New(slog.NewJSONHandler(&logs, nil))})
	_, err := m.Start(ctx)
	require.NoError(t, err)
	prepared, err := m.mint(ctx)
	require.NoError(t, err)
	require.NotContains(t, logs.String(), abandonedMsg, "a generation prepared after the last activation is not abandoned")
	next, err := m.RotateNow(ctx, "test")
	require.NoError(t, err)
	require.Greater(t, next.Generation, prepared.ID, "RotateNow mints afresh")
	require.Equal(t, 1, strings.Count(logs.String(), abandonedMsg), logs.String())
	require.Contains(t, logs.String(), `"generation":`+uitoa(prepared.ID)+`,`)
}

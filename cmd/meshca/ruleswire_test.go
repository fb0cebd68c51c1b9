package main

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/rotation"
	"github.com/meshca/meshca/rotation/alert"
	"github.com/meshca/meshca/rotation/inventory"
	"github.com/meshca/meshca/rotation/rules"
)

type stuckReporter struct{ st rotation.Status }

func (r stuckReporter) RotationStatus() rotation.Status { return r.st }

// serve's rules over a CA it opened: a fresh CA raises nothing; the
// active intermediate's action names when meshca rotates it (the
// controller's next step, else intermediate.activateThreshold of its
// lifetime); a retired generation is skipped; a stuck reporter fires.
func TestRules_OverTheOpenedCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	_, err := runMeshca(t, "init", "--dir", dir)
	require.NoError(t, err)
	cfg := config.Defaults(dir)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()
	rt, _, err := openCA(ctx, cfg, log, nil)
	require.NoError(t, err)
	defer rt.Close()
	inv, err := registerInventory(ctx, cfg, rt, nil, log, prometheus.NewRegistry())
	require.NoError(t, err)
	e, err := alert.New(ctx, alert.Options{Log: log})
	require.NoError(t, err)
	d := ruleDeps{cfg: cfg, rt: rt, inv: inv, log: log}
	sw := &rules.Sweeper{Alerts: e, Rules: newRules(d), Log: log}
	sw.Sweep(ctx)
	require.Empty(t, e.Firing())

	m := rt.Authority.Material()
	c := inventory.Certificate{Kind: inventory.KindIntermediate, Name: "gen-1", Cert: m.Bundle.Cert}
	// Without a reporter: intermediate.activateThreshold (0.66) of the lifetime.
	half := m.Bundle.Cert.NotBefore.Add(time.Duration(0.66 * float64(m.Bundle.Cert.NotAfter.Sub(m.Bundle.Cert.NotBefore))))
	require.Equal(t, "meshca will rotate it at "+half.UTC().Format(time.RFC3339)+".", expiryAction(d, c, m.Bundle.Cert.NotBefore))
	require.Equal(t, "meshca's rotation of it was due at "+half.UTC().Format(time.RFC3339)+" and has not happened: see meshca status and any RotationStuck or RootSourceUnreachable alert.",
		expiryAction(d, c, half.Add(time.Second)))
	next := half.Add(time.Hour)
	d.reporters = []rotation.Reporter{stuckReporter{rotation.Status{CA: rotation.CAIntermediate, Phase: "prepared", Next: next, Stuck: true, Problem: "verify failed"}}}
	require.Equal(t, "meshca will rotate it at "+next.UTC().Format(time.RFC3339)+".", expiryAction(d, c, half))
	require.False(t, retiredIntermediate(rt, nil)(c), "gen-1 is active")
	require.True(t, retiredIntermediate(rt, nil)(inventory.Certificate{Kind: inventory.KindIntermediate, Name: "gen-0"}))

	sw = &rules.Sweeper{Alerts: e, Rules: newRules(d), Log: log}
	sw.Sweep(ctx)
	f := e.Firing()
	require.Len(t, f, 1)
	require.Equal(t, "RotationStuck/rotation intermediate", f[0].Key)
}

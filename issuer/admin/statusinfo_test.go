package admin

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/ca/store/boltstore"
	"github.com/meshca/meshca/rotation"
	"github.com/meshca/meshca/rotation/inventory"
)

// testCert is a CA certificate with serial, valid from nb to na.
func testCert(t *testing.T, cn string, serial int64, nb, na time.Time) *x509.Certificate {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn}, NotBefore: nb, NotAfter: na, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return c
}

// fixedSource is an inventory source that reports certs (a stand-in for
// the cacerts Secret informer, whose parsing inventory tests cover).
type fixedSource struct {
	name  string
	certs []inventory.Certificate
}

func (f fixedSource) Name() string { return f.name }
func (f fixedSource) Certificates(context.Context) ([]inventory.Certificate, error) {
	return f.certs, nil
}

type fixedReporter rotation.Status

func (f fixedReporter) RotationStatus() rotation.Status { return rotation.Status(f) }

// TestLiveStatus_EveryCACertificateWithStateAndHealth: the roots, the
// active, retired-but-published and prepared generations, the cacerts
// Secret's certificates (once, though ca-cert.pem heads cert-chain.pem),
// the bundles with their earliest expiry and worst health, the rotation
// states in order and only the firing alerts.
func TestLiveStatus_EveryCACertificateWithStateAndHealth(t *testing.T) {
	ctx := context.Background()
	day := 24 * time.Hour
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakePassiveClock(now)
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "meshca.db"))
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })

	root := testCert(t, "root", 1, now.Add(-1000*day), now.Add(2650*day))   // 10 years, ok
	gen1 := testCert(t, "gen1", 0x11, now.Add(-89*day), now.Add(1*day))     // critical
	gen2 := testCert(t, "gen2", 0x22, now.Add(-60*day), now.Add(30*day))    // 90 days, 30 left: ok
	gen3 := testCert(t, "gen3", 0x33, now.Add(-time.Hour), now.Add(90*day)) // prepared
	old := testCert(t, "old", 0x44, now.Add(-400*day), now.Add(-200*day))   // prepared, expired: left out
	extra := testCert(t, "extra", 0x55, now.Add(-10*day), now.Add(5*day))   // warning
	for _, c := range []*x509.Certificate{gen1, gen2, gen3, old} {
		_, err := st.AddGeneration(ctx, store.Generation{CertDER: c.Raw, ChainDER: [][]byte{root.Raw}, KeyRef: "k", Source: "file-minted", CreatedAt: now})
		require.NoError(t, err)
	}
	require.NoError(t, st.ActivateGeneration(ctx, 1, now.Add(-80*day)))
	require.NoError(t, st.ActivateGeneration(ctx, 2, now.Add(-10*day)))
	require.NoError(t, st.PutAlertState(ctx, store.AlertState{Key: "a", Rule: "ca-expiry", Object: "gen-1", Severity: "critical", Summary: "gen-1 expires", Status: store.AlertFiring, StartsAt: now.Add(-time.Hour)}))
	require.NoError(t, st.PutAlertState(ctx, store.AlertState{Key: "b", Rule: "crl-stale", Object: "gen-1", Severity: "critical", Summary: "old", Status: store.AlertResolved, StartsAt: now.Add(-2 * time.Hour)}))

	ls := &LiveStatus{
		Store: StoreState{TrustDomain: "cluster.local", Path: "p", Generations: st},
		Inventory: []inventory.Source{
			&inventory.CASource{Roots: func() []*x509.Certificate { return []*x509.Certificate{root} }, Active: func() uint64 { return 2 }, Generations: st, Grace: 30 * day, Clock: clk},
			fixedSource{"cacerts", []inventory.Certificate{
				{Kind: inventory.KindCACerts, Namespace: "istio-system", Name: "cacerts", Cert: gen2},
				{Kind: inventory.KindCACerts, Namespace: "istio-system", Name: "cacerts", Cert: gen2},
				{Kind: inventory.KindCACerts, Namespace: "istio-system", Name: "cacerts", Cert: extra},
				{Kind: inventory.KindCACerts, Namespace: "istio-system", Name: "cacerts", Cert: root},
			}},
		},
		Rotation: []rotation.Reporter{
			fixedReporter{CA: rotation.CAIntermediate, Phase: "idle"},
			fixedReporter{CA: rotation.CARoot, Phase: "publish-both-roots", PhaseCode: 1, Paused: true},
		},
		Alerts: st,
		Clock:  clk,
	}
	got := ls.Status(ctx)
	require.Equal(t, now, got.GeneratedAt)
	type row struct{ kind, ns, name, state, serial, health string }
	var rows []row
	for _, c := range got.Certificates {
		rows = append(rows, row{c.Kind, c.Namespace, c.Name, c.State, c.Serial, c.Health})
	}
	require.Equal(t, []row{
		{"root", "", "root", "", "01", "ok"},
		{"intermediate", "", "gen-1", "retired", "11", "critical"},
		{"intermediate", "", "gen-2", "active", "22", "ok"},
		{"intermediate", "", "gen-3", "prepared", "33", "ok"},
		{"cacerts", "istio-system", "cacerts", "", "22", "ok"},
		{"cacerts", "istio-system", "cacerts", "", "55", "warning"},
		{"cacerts", "istio-system", "cacerts", "", "01", "ok"},
	}, rows)
	require.Equal(t, []BundleInfo{
		{Kind: "root", Name: "root", Certificates: 1, NotAfter: root.NotAfter, Health: "ok"},
		{Kind: "cacerts", Namespace: "istio-system", Name: "cacerts", Certificates: 3, NotAfter: extra.NotAfter, Health: "warning"},
	}, got.Bundles)
	require.Equal(t, []rotation.Status{{CA: "intermediate", Phase: "idle"}, {CA: "root", Phase: "publish-both-roots", PhaseCode: 1, Paused: true}}, got.Rotation)
	require.Equal(t, []AlertInfo{{Rule: "ca-expiry", Object: "gen-1", Severity: "critical", Summary: "gen-1 expires", StartsAt: now.Add(-time.Hour)}}, got.Alerts)
	require.Empty(t, got.Problems)
}

// movingReporter's state changes between calls, as a controller's does.
type movingReporter struct {
	mu sync.Mutex
	st rotation.Status
}

func (m *movingReporter) RotationStatus() rotation.Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st
}

func (m *movingReporter) set(st rotation.Status) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.st = st
}

type failingSource struct{ fixedSource }

func (f failingSource) Certificates(ctx context.Context) ([]inventory.Certificate, error) {
	certs, _ := f.fixedSource.Certificates(ctx)
	return certs, errors.New("the Secret informer has not synced")
}

// TestStatusRoute_RotationIsReadAtEachRequest: the status route asks each
// registered reporter at every request (the phase moves between two
// calls), the rotation state survives the JSON round trip exactly, and a
// source that fails partly is named under problems while its certificates
// are still listed.
func TestStatusRoute_RotationIsReadAtEachRequest(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakePassiveClock(now)
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "meshca.db"))
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	plugged := testCert(t, "plugged", 7, now.Add(-time.Hour), now.Add(300*24*time.Hour))
	intermediate := &movingReporter{st: rotation.Status{CA: rotation.CAIntermediate, Phase: "idle", Next: now.Add(time.Hour)}}
	c, _, _ := serveAll(t, Options{Status: &LiveStatus{
		Store:     StoreState{TrustDomain: "cluster.local", Generations: st},
		Inventory: []inventory.Source{failingSource{fixedSource{"cacerts", []inventory.Certificate{{Kind: inventory.KindCACerts, Namespace: "istio-system", Name: "cacerts", Cert: plugged}}}}},
		Rotation:  []rotation.Reporter{intermediate},
		Alerts:    st,
		Clock:     clk,
	}})
	ctx := context.Background()
	got, err := c.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, []rotation.Status{{CA: "intermediate", Phase: "idle", Next: now.Add(time.Hour)}}, got.Rotation)
	require.Equal(t, []string{"cacerts: the Secret informer has not synced"}, got.Problems)
	require.Len(t, got.Certificates, 1)
	require.Equal(t, "07", got.Certificates[0].Serial)

	moved := rotation.Status{CA: "intermediate", Phase: "prepared", PhaseCode: 1, Since: now, Next: now.Add(2 * time.Hour), Waiting: "activation at 66% of the lifetime",
		Stuck: true, Problem: "verify: throwaway leaf did not verify", LastSuccess: now.Add(-time.Hour)}
	intermediate.set(moved)
	got, err = c.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, []rotation.Status{moved}, got.Rotation)
	require.Equal(t, now, got.GeneratedAt)
	require.Equal(t, []AlertInfo{}, got.Alerts)
}

// A generation prepared before a newer one was activated is abandoned in
// the generations and in the CA certificates (it is still valid); one
// prepared after the last activation is prepared.
func TestLiveStatus_AbandonedGeneration(t *testing.T) {
	ctx := context.Background()
	day := 24 * time.Hour
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "meshca.db"))
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	root := testCert(t, "root", 1, now.Add(-1000*day), now.Add(2650*day))
	for i, c := range []*x509.Certificate{
		testCert(t, "gen1", 0x11, now.Add(-60*day), now.Add(30*day)),
		testCert(t, "gen2", 0x22, now.Add(-30*day), now.Add(60*day)), // lost the Lease while prepared
		testCert(t, "gen3", 0x33, now.Add(-30*day), now.Add(60*day)),
		testCert(t, "gen4", 0x44, now.Add(-time.Hour), now.Add(90*day)), // the next successor
	} {
		g, err := st.AddGeneration(ctx, store.Generation{CertDER: c.Raw, ChainDER: [][]byte{root.Raw}, KeyRef: "k", Source: "file-minted", CreatedAt: now})
		require.NoError(t, err)
		if i == 0 || i == 2 {
			require.NoError(t, st.ActivateGeneration(ctx, g.ID, now.Add(-time.Duration(3-i)*day)))
		}
	}
	got := (&LiveStatus{Store: StoreState{Generations: st}, Clock: clocktesting.NewFakePassiveClock(now)}).Status(ctx)
	var states []string
	for _, g := range got.Generations {
		states = append(states, g.State)
	}
	require.Equal(t, []string{"retired", "abandoned", "active", "prepared"}, states)
	var certs []string
	for _, c := range got.Certificates {
		certs = append(certs, c.Name+" "+c.State)
	}
	require.Equal(t, []string{"gen-2 abandoned", "gen-4 prepared"}, certs, "without inventory sources: the generations no source publishes")
}

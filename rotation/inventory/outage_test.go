package inventory_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/meshca/meshca/rotation/inventory"
	"github.com/meshca/meshca/test/logbuf"
	"github.com/meshca/meshca/trustbundle/publish"
)

// meshca serve may start while the apiserver is down (a node restart, a
// control-plane upgrade): NewKube must not call it, and the
// ClusterTrustBundle source reports the bundles once discovery, retried in
// the background, succeeds after the apiserver is back.
func TestKube_StartsDuringAnApiserverOutage(t *testing.T) {
	ctx := testCtx(t)
	bundleRoot := newCA(t, "Outage Root", 0x51, day0, day0.AddDate(0, 0, 30), nil)
	const signer = "meshca.io/inv-outage"
	createBundle(ctx, t, publish.BundleName(signer), signer, map[string]string{publish.LabelTrustBundle: "inv-outage"}, pemOf(bundleRoot))

	if err := env.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	restarted := false
	defer func() {
		if !restarted {
			_ = env.RestartAPIServer()
		}
	}()
	log := slog.New(slog.NewTextHandler(logbuf.ForTest(t), nil))
	k, err := inventory.NewKube(env.Client, "inv-outage", "cacerts", []inventory.BundleSelector{meshcaBundleSelector(signer)}, inventory.WithKubeLogger(log))
	if err != nil {
		t.Fatalf("NewKube during an apiserver outage: %v", err)
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	k.Start(runCtx)
	src := k.ClusterTrustBundles()
	if src == nil {
		t.Fatal("no ClusterTrustBundle source although a selector is configured")
	}
	if _, err := src.Certificates(ctx); err == nil {
		t.Fatal("the source answered while the apiserver is down")
	}
	restarted = true
	if err := env.RestartAPIServer(); err != nil {
		t.Fatal(err)
	}
	syncCtx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	if !k.WaitForSync(syncCtx) {
		t.Fatal("the informers did not sync after the apiserver came back")
	}
	certs, err := src.Certificates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 1 || certs[0].Cert.SerialNumber.Int64() != 0x51 || certs[0].Name != publish.BundleName(signer) {
		t.Fatalf("certificates: %+v", certs)
	}
}

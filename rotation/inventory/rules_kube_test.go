package inventory_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	testclock "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/rotation/alert"
	"github.com/meshca/meshca/rotation/inventory"
	"github.com/meshca/meshca/rotation/rules"
)

// The CA expiry rule over the cacerts Secret read from a real apiserver:
// a certificate with 2 days left is critical, with the action for a
// Secret meshca does not write; once the Secret is deleted the alert is
// cleared, not left firing.
func TestCAExpiryRule_CACertsSecretDeletedIsCleared(t *testing.T) {
	ctx := testCtx(t)
	const ns = "rules-istio-system"
	if err := env.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	now := day0.AddDate(0, 0, 100)
	inter := newCA(t, "Expiring Intermediate", 0x77, day0, now.Add(48*time.Hour), nil)
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cacerts"},
		Data: map[string][]byte{"ca-cert.pem": pemOf(inter), "cert-chain.pem": pemOf(inter), "ca-key.pem": []byte("never read")}}
	if _, err := env.Client.CoreV1().Secrets(ns).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	k, err := inventory.NewKube(env.Client, ns, "cacerts", nil)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	k.Start(runCtx)
	if !k.WaitForSync(ctx) {
		t.Fatal("informers did not sync")
	}
	clk := testclock.NewFakeClock(now)
	e, err := alert.New(ctx, alert.Options{Clock: clk, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	sw := &rules.Sweeper{Alerts: e, Clock: clk, Log: slog.New(slog.DiscardHandler),
		Rules: []rules.Rule{&rules.CAExpiry{Sources: []inventory.Source{k.CACerts()}, Thresholds: rules.DefaultThresholds()}}}
	sw.Sweep(ctx)
	firing := e.Firing()
	want := fmt.Sprintf("CACertificateExpiring/Secret %s/cacerts serial 77 critical replace the cacerts files: put a new intermediate (ca-cert.pem, ca-key.pem, cert-chain.pem) into the Secret, then restart istiod.", ns)
	if len(firing) != 1 || firing[0].Key+" "+firing[0].Severity+" "+firing[0].Action != want {
		t.Fatalf("firing %+v, want one: %s", firing, want)
	}
	if err := env.Client.CoreV1().Secrets(ns).Delete(ctx, "cacerts", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, _ := k.CACerts().Certificates(ctx); len(c) == 0 {
			break
		}
	}
	sw.Sweep(ctx)
	if f := e.Firing(); len(f) != 0 {
		t.Fatalf("still firing after the Secret was deleted: %+v", f)
	}
}

package inventory_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	testclock "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/rotation/alert"
	"github.com/meshca/meshca/rotation/inventory"
	"github.com/meshca/meshca/rotation/rules"
	"github.com/meshca/meshca/test/kubeenv"
)

// The Secret scan against a real apiserver: only Secrets the selectors
// name (istio.io/key-and-cert; kubernetes.io/tls labelled
// meshca.io/monitor=true) are read, the cache keeps no key and no
// certificate, the leaf certificates' expiry is aggregated per namespace
// (the soonest beyond MaxNamespaces summed in _other), and a deleted
// Secret leaves the aggregate.
func TestSecretScan_AggregatesSelectedSecretsPerNamespace(t *testing.T) {
	ctx := testCtx(t)
	for _, ns := range []string{"scan-a", "scan-b", "scan-c"} {
		if err := env.CreateNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	ca := newCA(t, "Workload CA", 1, day0, day0.AddDate(1, 0, 0), nil)
	leaf := func(serial int64, nb, na time.Time) []byte { return pemOf(newCA(t, "leaf", serial, nb, na, ca), ca) }
	create := func(ns, name string, typ corev1.SecretType, lbl map[string]string, data map[string][]byte) {
		t.Helper()
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: lbl}, Type: typ, Data: data}
		if _, err := env.Client.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	monitor := map[string]string{"meshca.io/monitor": "true"}
	create("scan-a", "istio.default", "istio.io/key-and-cert", nil, map[string][]byte{
		"cert-chain.pem": leaf(10, day0, day0.Add(24*time.Hour)), "key.pem": []byte("private"), "root-cert.pem": pemOf(ca)})
	create("scan-a", "istio.other", "istio.io/key-and-cert", nil, map[string][]byte{
		"cert-chain.pem": leaf(11, day0, day0.Add(48*time.Hour)), "key.pem": []byte("private")})
	create("scan-b", "web-tls", corev1.SecretTypeTLS, monitor, map[string][]byte{
		"tls.crt": leaf(12, day0, day0.Add(90*24*time.Hour)), "tls.key": []byte("private")})
	create("scan-b", "unlabelled-tls", corev1.SecretTypeTLS, nil, map[string][]byte{
		"tls.crt": leaf(13, day0, day0.Add(time.Hour)), "tls.key": []byte("private")})
	create("scan-c", "opaque", corev1.SecretTypeOpaque, monitor, map[string][]byte{"tls.crt": leaf(14, day0, day0.Add(time.Hour))})
	create("scan-c", "broken", "istio.io/key-and-cert", nil, map[string][]byte{"cert-chain.pem": []byte("not PEM")})

	s := inventory.NewSecretScan(env.Client, []inventory.SecretSelector{
		{Type: "istio.io/key-and-cert"},
		{Type: "kubernetes.io/tls", LabelSelector: "meshca.io/monitor=true"},
	}, 2, issuersOf(ca))
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	s.Start(runCtx)
	if !s.WaitForSync(ctx) {
		t.Fatal("informers did not sync")
	}
	for _, obj := range s.Cached() {
		if len(obj.Data) != 0 || len(obj.StringData) != 0 {
			t.Fatalf("the cache holds Secret data of %s/%s: %v", obj.Namespace, obj.Name, obj.Data)
		}
	}
	head := `
# HELP meshca_secret_scan_not_after_min_timestamp_seconds The earliest notAfter of the leaf certificates meshca issued in the scanned Secrets (inventory.secretScan), by namespace, in seconds since the epoch. Namespaces beyond inventory.secretScan.maxNamespaces (the latest to expire) are summed in namespace="_other".
# TYPE meshca_secret_scan_not_after_min_timestamp_seconds gauge
`
	mid := `# HELP meshca_secret_scan_secrets Scanned Secrets (inventory.secretScan.selectors) whose leaf certificate meshca issued, by namespace.
# TYPE meshca_secret_scan_secrets gauge
`
	tail := `# HELP meshca_secret_scan_foreign Scanned Secrets whose leaf certificate parses but was not issued by one of meshca's intermediates (its signature does not verify under them): counted, never alerted on.
# TYPE meshca_secret_scan_foreign gauge
meshca_secret_scan_foreign 0
# HELP meshca_secret_scan_unparsable Scanned Secrets with no certificate that parses.
# TYPE meshca_secret_scan_unparsable gauge
meshca_secret_scan_unparsable 1
`
	poll(t, s, head+fmt.Sprintf(`meshca_secret_scan_not_after_min_timestamp_seconds{namespace="scan-a"} %d
meshca_secret_scan_not_after_min_timestamp_seconds{namespace="scan-b"} %d
`, day0.Add(24*time.Hour).Unix(), day0.Add(90*24*time.Hour).Unix())+mid+`meshca_secret_scan_secrets{namespace="scan-a"} 2
meshca_secret_scan_secrets{namespace="scan-b"} 1
`+tail)

	// A third namespace, sooner: scan-b, the latest, goes to _other.
	create("scan-c", "istio.late", "istio.io/key-and-cert", nil, map[string][]byte{"cert-chain.pem": leaf(15, day0, day0.Add(10*time.Hour))})
	poll(t, s, head+fmt.Sprintf(`meshca_secret_scan_not_after_min_timestamp_seconds{namespace="_other"} %d
meshca_secret_scan_not_after_min_timestamp_seconds{namespace="scan-a"} %d
meshca_secret_scan_not_after_min_timestamp_seconds{namespace="scan-c"} %d
`, day0.Add(90*24*time.Hour).Unix(), day0.Add(24*time.Hour).Unix(), day0.Add(10*time.Hour).Unix())+mid+`meshca_secret_scan_secrets{namespace="_other"} 1
meshca_secret_scan_secrets{namespace="scan-a"} 2
meshca_secret_scan_secrets{namespace="scan-c"} 1
`+tail)

	// Deleted: it leaves the aggregate.
	if err := env.Client.CoreV1().Secrets("scan-c").Delete(ctx, "istio.late", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, s, head+fmt.Sprintf(`meshca_secret_scan_not_after_min_timestamp_seconds{namespace="scan-a"} %d
meshca_secret_scan_not_after_min_timestamp_seconds{namespace="scan-b"} %d
`, day0.Add(24*time.Hour).Unix(), day0.Add(90*24*time.Hour).Unix())+mid+`meshca_secret_scan_secrets{namespace="scan-a"} 2
meshca_secret_scan_secrets{namespace="scan-b"} 1
`+tail)
	got := s.Namespaces()
	want := []inventory.SecretExpiry{
		{Namespace: "scan-a", Secrets: 2, NotBefore: day0, NotAfter: day0.Add(24 * time.Hour)},
		{Namespace: "scan-b", Secrets: 1, NotBefore: day0, NotAfter: day0.Add(90 * 24 * time.Hour)},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Namespaces() = %v, want %v", got, want)
	}
}

// poll scrapes s until it gives want (the watch delivers changes
// asynchronously) or a deadline passes.
func poll(t *testing.T, s *inventory.SecretScan, want string) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if err = testutil.CollectAndCompare(s.Collector(), strings.NewReader(want)); err == nil {
			return
		}
	}
	t.Fatal(err)
}

// With only deploy/rbac/secretscan.yaml bound (list and watch, no get),
// the scan syncs as the ServiceAccount istio-system/meshca, and the
// WorkloadSecretExpiring rule fires for the namespace whose Secret is
// near expiry and is cleared once the Secret is deleted.
func TestSecretScan_ShippedRBACAndExpiryRule(t *testing.T) {
	ctx := testCtx(t)
	for _, ns := range []string{"istio-system", "scan-rbac"} {
		if err := env.CreateNamespace(ctx, ns); err != nil && !strings.Contains(err.Error(), "already exists") {
			t.Fatal(err)
		}
	}
	root, err := kubeenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.ApplyYAMLFile(ctx, filepath.Join(root, "deploy", "rbac", "secretscan.yaml")); err != nil {
		t.Fatal(err)
	}
	ca := newCA(t, "Workload CA", 1, day0, day0.AddDate(1, 0, 0), nil)
	leaf := newCA(t, "leaf", 2, day0, day0.Add(24*time.Hour), ca)
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "scan-rbac", Name: "istio.default"}, Type: "istio.io/key-and-cert",
		Data: map[string][]byte{"cert-chain.pem": pemOf(leaf, ca), "key.pem": []byte("private")}}
	if _, err := env.Client.CoreV1().Secrets("scan-rbac").Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, client, err := env.ClientAs(ctx, "istio-system", "meshca")
	if err != nil {
		t.Fatal(err)
	}
	s := inventory.NewSecretScan(client, []inventory.SecretSelector{{Type: "istio.io/key-and-cert"}}, 50, issuersOf(ca))
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	s.Start(runCtx)
	if !s.WaitForSync(ctx) {
		t.Fatal("the scan did not sync with the shipped RBAC")
	}

	clk := testclock.NewFakeClock(day0.Add(20 * time.Hour)) // 4h of 24h left: under 30%
	e, err := alert.New(ctx, alert.Options{Clock: clk, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	sw := &rules.Sweeper{Alerts: e, Clock: clk, Log: slog.New(slog.DiscardHandler), Rules: []rules.Rule{&rules.SecretsExpiring{
		Thresholds: rules.DefaultThresholds(),
		Namespaces: func() ([]inventory.SecretExpiry, bool) { return ours(s.Namespaces()), s.Synced() },
	}}}
	const key = "WorkloadSecretExpiring/namespace scan-rbac"
	firing := func() []string {
		var out []string
		for _, f := range e.Firing() {
			out = append(out, f.Key+" "+f.Severity)
		}
		return out
	}
	sw.Sweep(ctx)
	if got := firing(); fmt.Sprint(got) != fmt.Sprint([]string{key + " warning"}) {
		t.Fatalf("firing %v", got)
	}
	if err := env.Client.CoreV1().Secrets("scan-rbac").Delete(ctx, "istio.default", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); len(ours(s.Namespaces())) > 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
	}
	sw.Sweep(ctx)
	if got := firing(); len(got) != 0 {
		t.Fatalf("still firing after the Secret was deleted: %v", got)
	}
}

// ours keeps namespace scan-rbac: the apiserver is shared with the other tests.
func ours(agg []inventory.SecretExpiry) []inventory.SecretExpiry {
	var out []inventory.SecretExpiry
	for _, e := range agg {
		if e.Namespace == "scan-rbac" {
			out = append(out, e)
		}
	}
	return out
}

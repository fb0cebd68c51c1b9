package inventory_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"log/slog"
	"math/big"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	testclock "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/rotation/alert"
	"github.com/meshca/meshca/rotation/inventory"
	"github.com/meshca/meshca/rotation/rules"
)

func issuersOf(cas ...*testCA) func() []*x509.Certificate {
	return func() []*x509.Certificate {
		var out []*x509.Certificate
		for _, c := range cas {
			out = append(out, c.cert)
		}
		return out
	}
}

// forge makes what a tenant can write: a certificate that names inter as
// its issuer (same issuer name, authority key identifier = inter's subject
// key identifier) but is signed by a key of the tenant's.
func forge(t *testing.T, inter *testCA, serial int64, nb, na time.Time) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	fakeIssuer := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: inter.cert.Subject, SubjectKeyId: inter.cert.SubjectKeyId,
		NotBefore: nb, NotAfter: na, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), NotBefore: nb, NotAfter: na, AuthorityKeyId: inter.cert.SubjectKeyId}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, fakeIssuer, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if string(c.RawIssuer) != string(inter.cert.RawSubject) || string(c.AuthorityKeyId) != string(inter.cert.SubjectKeyId) {
		t.Fatal("the forgery does not name meshca's intermediate")
	}
	return &testCA{cert: c, key: key}
}

// TestSecretScan_ForeignLeafIsCountedNotAlerted: a tenant writes an
// expired certificate into a selected Secret, naming meshca's intermediate
// as issuer (name and key identifier are public) but signed by its own
// key. It is counted in meshca_secret_scan_foreign, is not in the
// per-namespace aggregate and raises no WorkloadSecretExpiring; an expired
// leaf meshca's intermediate did sign pages critical for its namespace.
func TestSecretScan_ForeignLeafIsCountedNotAlerted(t *testing.T) {
	ctx := testCtx(t)
	for _, ns := range []string{"scan-mine", "scan-tenant"} {
		if err := env.CreateNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	root := newCA(t, "meshca Root", 1, day0, day0.AddDate(10, 0, 0), nil)
	inter := newCA(t, "meshca Intermediate", 2, day0, day0.AddDate(1, 0, 0), root)
	expired := day0.Add(time.Hour)
	lbl := map[string]string{"scan-test": "foreign"}
	for ns, leaf := range map[string]*testCA{
		"scan-mine":   newCA(t, "leaf", 3, day0, expired, inter),
		"scan-tenant": forge(t, inter, 4, day0, expired),
	} {
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "istio.default", Labels: lbl}, Type: "istio.io/key-and-cert",
			Data: map[string][]byte{"cert-chain.pem": pemOf(leaf, inter), "key.pem": []byte("private")}}
		if _, err := env.Client.CoreV1().Secrets(ns).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = env.Client.CoreV1().Secrets(ns).Delete(context.Background(), "istio.default", metav1.DeleteOptions{})
		})
	}
	s := inventory.NewSecretScan(env.Client, []inventory.SecretSelector{{Type: "istio.io/key-and-cert", LabelSelector: "scan-test=foreign"}}, 50, issuersOf(inter))
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	s.Start(runCtx)
	if !s.WaitForSync(ctx) {
		t.Fatal("informers did not sync")
	}
	poll(t, s, fmt.Sprintf(`
# HELP meshca_secret_scan_foreign Scanned Secrets whose leaf certificate parses but was not issued by one of meshca's intermediates (its signature does not verify under them): counted, never alerted on.
# TYPE meshca_secret_scan_foreign gauge
meshca_secret_scan_foreign 1
# HELP meshca_secret_scan_not_after_min_timestamp_seconds The earliest notAfter of the leaf certificates meshca issued in the scanned Secrets (inventory.secretScan), by namespace, in seconds since the epoch. Namespaces beyond inventory.secretScan.maxNamespaces (the latest to expire) are summed in namespace="_other".
# TYPE meshca_secret_scan_not_after_min_timestamp_seconds gauge
meshca_secret_scan_not_after_min_timestamp_seconds{namespace="scan-mine"} %d
# HELP meshca_secret_scan_secrets Scanned Secrets (inventory.secretScan.selectors) whose leaf certificate meshca issued, by namespace.
# TYPE meshca_secret_scan_secrets gauge
meshca_secret_scan_secrets{namespace="scan-mine"} 1
# HELP meshca_secret_scan_unparsable Scanned Secrets with no certificate that parses.
# TYPE meshca_secret_scan_unparsable gauge
meshca_secret_scan_unparsable 0
`, expired.Unix()))

	clk := testclock.NewFakeClock(day0.AddDate(0, 0, 1))
	e, err := alert.New(ctx, alert.Options{Clock: clk, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	sw := &rules.Sweeper{Alerts: e, Clock: clk, Log: slog.New(slog.DiscardHandler), Rules: []rules.Rule{&rules.SecretsExpiring{
		Thresholds: rules.DefaultThresholds(),
		Namespaces: func() ([]inventory.SecretExpiry, bool) { return s.Namespaces(), s.Synced() },
	}}}
	sw.Sweep(ctx)
	var got []string
	for _, f := range e.Firing() {
		got = append(got, f.Key+" "+f.Severity)
	}
	if want := []string{"WorkloadSecretExpiring/namespace scan-mine critical"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("firing %v, want %v", got, want)
	}
}

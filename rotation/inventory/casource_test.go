package inventory_test

import (
	"context"
	"crypto/x509"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/ca/store/boltstore"
	"github.com/meshca/meshca/rotation/inventory"
)

// TestCASource_ReportsRootsAndPublishedGenerations: the root, the active
// generation and a generation retired within the grace period are
// reported with their exact validity; a generation retired longer ago and
// one never activated are not.
func TestCASource_ReportsRootsAndPublishedGenerations(t *testing.T) {
	ctx := context.Background()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "meshca.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })

	root := newCA(t, "Test Root", 1, day0, day0.AddDate(0, 0, 3650), nil)
	gens := []*testCA{
		newCA(t, "gen A", 0x0a, day0.AddDate(0, 0, -30), day0.AddDate(0, 0, 60), root), // retired day 5
		newCA(t, "gen B", 0x0b, day0.AddDate(0, 0, 4), day0.AddDate(0, 0, 94), root),   // retired day 10
		newCA(t, "gen C", 0x0c, day0.AddDate(0, 0, 9), day0.AddDate(0, 0, 99), root),   // active
		newCA(t, "gen D", 0x0d, day0.AddDate(0, 0, 10), day0.AddDate(0, 0, 100), root), // prepared only
	}
	activations := []time.Time{day0.AddDate(0, 0, -30), day0.AddDate(0, 0, 5), day0.AddDate(0, 0, 10), {}}
	for i, g := range gens {
		rec, err := st.AddGeneration(ctx, store.Generation{CertDER: g.cert.Raw, ChainDER: [][]byte{root.cert.Raw}, Source: "file-minted"})
		if err != nil {
			t.Fatal(err)
		}
		if !activations[i].IsZero() {
			if err := st.ActivateGeneration(ctx, rec.ID, activations[i]); err != nil {
				t.Fatal(err)
			}
		}
	}
	src := &inventory.CASource{
		Roots:       func() []*x509.Certificate { return []*x509.Certificate{root.cert} },
		Active:      func() uint64 { return 3 },
		Generations: st,
		Grace:       48 * time.Hour,
		Clock:       clocktesting.NewFakePassiveClock(day0.AddDate(0, 0, 11)),
	}
	c := inventory.NewCollector([]inventory.Source{src})

	// day0 is 1767225600.
	want := `
# HELP meshca_certificate_not_after_timestamp_seconds The notAfter of a CA certificate meshca publishes or finds in the cluster, in seconds since the epoch, by kind (root, intermediate, cacerts, clustertrustbundle) and holding object.
# TYPE meshca_certificate_not_after_timestamp_seconds gauge
meshca_certificate_not_after_timestamp_seconds{issuer="CN=Test Root,O=meshca-test",kind="intermediate",name="gen-2",namespace="",serial="0b"} 1775347200
meshca_certificate_not_after_timestamp_seconds{issuer="CN=Test Root,O=meshca-test",kind="intermediate",name="gen-3",namespace="",serial="0c"} 1775779200
meshca_certificate_not_after_timestamp_seconds{issuer="CN=Test Root,O=meshca-test",kind="root",name="root",namespace="",serial="01"} 2082585600
# HELP meshca_certificate_not_before_timestamp_seconds The notBefore of a CA certificate meshca publishes or finds in the cluster, in seconds since the epoch, by kind and holding object.
# TYPE meshca_certificate_not_before_timestamp_seconds gauge
meshca_certificate_not_before_timestamp_seconds{issuer="CN=Test Root,O=meshca-test",kind="intermediate",name="gen-2",namespace="",serial="0b"} 1767571200
meshca_certificate_not_before_timestamp_seconds{issuer="CN=Test Root,O=meshca-test",kind="intermediate",name="gen-3",namespace="",serial="0c"} 1768003200
meshca_certificate_not_before_timestamp_seconds{issuer="CN=Test Root,O=meshca-test",kind="root",name="root",namespace="",serial="01"} 1767225600
# HELP meshca_inventory_source_up Whether the inventory source (ca, cacerts, clustertrustbundles) answered the last scrape completely (1) or not (0: not synced, unreadable, or a certificate that does not parse).
# TYPE meshca_inventory_source_up gauge
meshca_inventory_source_up{source="ca"} 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}

// TestCASource_StoreErrorMarksSourceDownAndKeepsRoots: a store that cannot
// be read leaves the roots reported and the source down.
func TestCASource_StoreErrorMarksSourceDownAndKeepsRoots(t *testing.T) {
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "meshca.db"))
	if err != nil {
		t.Fatal(err)
	}
	st.Close() // reads now fail
	root := newCA(t, "Test Root", 1, day0, day0.AddDate(0, 0, 3650), nil)
	src := &inventory.CASource{
		Roots:       func() []*x509.Certificate { return []*x509.Certificate{root.cert} },
		Active:      func() uint64 { return 1 },
		Generations: st,
	}
	want := `
# HELP meshca_certificate_not_after_timestamp_seconds The notAfter of a CA certificate meshca publishes or finds in the cluster, in seconds since the epoch, by kind (root, intermediate, cacerts, clustertrustbundle) and holding object.
# TYPE meshca_certificate_not_after_timestamp_seconds gauge
meshca_certificate_not_after_timestamp_seconds{issuer="CN=Test Root,O=meshca-test",kind="root",name="root",namespace="",serial="01"} 2082585600
# HELP meshca_inventory_source_up Whether the inventory source (ca, cacerts, clustertrustbundles) answered the last scrape completely (1) or not (0: not synced, unreadable, or a certificate that does not parse).
# TYPE meshca_inventory_source_up gauge
meshca_inventory_source_up{source="ca"} 0
`
	if err := testutil.CollectAndCompare(inventory.NewCollector([]inventory.Source{src}), strings.NewReader(want),
		"meshca_certificate_not_after_timestamp_seconds", "meshca_inventory_source_up"); err != nil {
		t.Fatal(err)
	}
}

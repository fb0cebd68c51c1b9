package inventory_test

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshca/meshca/rotation/inventory"
)

// listSource is a Source over a fixed list.
type listSource []inventory.Certificate

func (listSource) Name() string { return "list" }
func (l listSource) Certificates(context.Context) ([]inventory.Certificate, error) {
	return l, nil
}

// TestCollector_NoFreeTextLabel: the labels are the kind, the holder's
// namespace and name and the serial; the issuer's name (free text that
// whoever wrote the certificate chose, here not even UTF-8) is not a
// label, so it can neither multiply the series nor panic the scrape.
func TestCollector_NoFreeTextLabel(t *testing.T) {
	c := &x509.Certificate{SerialNumber: big.NewInt(0x77), Issuer: pkix.Name{CommonName: "bad\xffname"}, NotBefore: day0, NotAfter: day0.AddDate(0, 0, 1)}
	src := listSource{{Kind: inventory.KindCACerts, Namespace: "ns", Name: "cacerts", Cert: c}}
	want := `
# HELP meshca_certificate_not_after_timestamp_seconds The notAfter of a CA certificate meshca publishes or finds in the cluster, in seconds since the epoch, by kind (root, intermediate, cacerts, clustertrustbundle) and holding object.
# TYPE meshca_certificate_not_after_timestamp_seconds gauge
meshca_certificate_not_after_timestamp_seconds{kind="cacerts",name="cacerts",namespace="ns",serial="77"} 1767312000
`
	if err := testutil.CollectAndCompare(inventory.NewCollector([]inventory.Source{src}), strings.NewReader(want),
		"meshca_certificate_not_after_timestamp_seconds"); err != nil {
		t.Fatal(err)
	}
}

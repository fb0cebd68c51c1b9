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

// TestCollector_IssuerLabelIsUTF8AndBounded: a label value must be UTF-8
// or the client library panics in the scrape, and a long one costs every
// scrape. The issuer label is the RFC 4514 string of the name, which
// turns bytes that are not UTF-8 (from a certificate whoever wrote the
// cacerts Secret chose) into U+FFFD, cut to 256 characters.
func TestCollector_IssuerLabelIsUTF8AndBounded(t *testing.T) {
	c := &x509.Certificate{SerialNumber: big.NewInt(0x77), Issuer: pkix.Name{CommonName: "bad\xffname"}, NotBefore: day0, NotAfter: day0.AddDate(0, 0, 1)}
	long := &x509.Certificate{SerialNumber: big.NewInt(0x78), Issuer: pkix.Name{CommonName: strings.Repeat("x", 400)}, NotBefore: day0, NotAfter: day0.AddDate(0, 0, 1)}
	src := listSource{{Kind: inventory.KindCACerts, Namespace: "ns", Name: "cacerts", Cert: c}, {Kind: inventory.KindCACerts, Namespace: "ns", Name: "cacerts", Cert: long}}
	// "CN=" and 252 x's are 255 characters, then the ellipsis.
	want := `
# HELP meshca_certificate_not_after_timestamp_seconds The notAfter of a CA certificate meshca publishes or finds in the cluster, in seconds since the epoch, by kind (root, intermediate, cacerts, clustertrustbundle) and holding object.
# TYPE meshca_certificate_not_after_timestamp_seconds gauge
meshca_certificate_not_after_timestamp_seconds{issuer="CN=bad<U+FFFD>name",kind="cacerts",name="cacerts",namespace="ns",serial="77"} 1767312000
meshca_certificate_not_after_timestamp_seconds{issuer="CN=` + strings.Repeat("x", 252) + `…",kind="cacerts",name="cacerts",namespace="ns",serial="78"} 1767312000
`
	if err := testutil.CollectAndCompare(inventory.NewCollector([]inventory.Source{src}), strings.NewReader(strings.Replace(want, "<U+FFFD>", "\uFFFD", 1)),
		"meshca_certificate_not_after_timestamp_seconds"); err != nil {
		t.Fatal(err)
	}
}

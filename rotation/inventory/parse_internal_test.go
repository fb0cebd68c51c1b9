package inventory

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"
)

// TestParsePEMCerts_CapsCertificatesPerObject: an object stuffed with
// certificates (a cacerts Secret can hold a megabyte) yields at most
// maxCertsPerObject series and an error that marks the source down.
func TestParsePEMCerts_CapsCertificatesPerObject(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for i := range maxCertsPerObject + 5 {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 1)), NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1e9, 0)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	}
	certs, err := parsePEMCerts(b.String(), KindCACerts, "ns", "cacerts")
	if len(certs) != maxCertsPerObject || err == nil || !strings.Contains(err.Error(), "more than 32 certificates") {
		t.Fatalf("got %d certificates, error %v; want %d and a cap error", len(certs), err, maxCertsPerObject)
	}
}

// Package inspect renders certificates, chains, CSRs and CRLs as short,
// human-readable summaries for operators (meshca inspect). It only reads.
package inspect

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/meshca/meshca/ca/oid"
)

// ExtensionNames maps well-known extension OIDs that Go does not decode.
var ExtensionNames = map[string]string{
	oid.SubjectAltPublicKeyInfo.String(): "subjectAltPublicKeyInfo (ITU-T X.509 alternative public key)",
	oid.AltSignatureAlgorithm.String():   "altSignatureAlgorithm (ITU-T X.509 alternative signature)",
	oid.AltSignatureValue.String():       "altSignatureValue (ITU-T X.509 alternative signature)",
}

// Describer adds lines for extensions or algorithms this package does not
// know (the post-quantum profiles plug in here).
type Describer func(c *x509.Certificate) []string

// Options tune the output.
type Options struct {
	Now       time.Time
	Describer Describer
}

// Write summarises every PEM block (or a single DER object) in b.
func Write(w io.Writer, b []byte, opts Options) error {
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	if !bytes.Contains(b, []byte("-----BEGIN")) {
		return writeDER(w, b, opts)
	}
	rest := b
	n := 0
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		n++
		if n > 1 {
			fmt.Fprintln(w)
		}
		switch block.Type {
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return fmt.Errorf("block %d: certificate does not parse: %w", n, err)
			}
			fmt.Fprintf(w, "[%d] ", n)
			certificate(w, c, opts)
		case "X509 CRL":
			crl, err := x509.ParseRevocationList(block.Bytes)
			if err != nil {
				return fmt.Errorf("block %d: CRL does not parse: %w", n, err)
			}
			fmt.Fprintf(w, "[%d] ", n)
			revocationList(w, crl, opts)
		case "CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST":
			csr, err := x509.ParseCertificateRequest(block.Bytes)
			if err != nil {
				return fmt.Errorf("block %d: CSR does not parse: %w", n, err)
			}
			fmt.Fprintf(w, "[%d] ", n)
			request(w, csr)
		default:
			fmt.Fprintf(w, "[%d] %s block (%d bytes), not inspected\n", n, block.Type, len(block.Bytes))
		}
	}
	if n == 0 {
		return fmt.Errorf("no PEM blocks found")
	}
	return nil
}

func writeDER(w io.Writer, b []byte, opts Options) error {
	if c, err := x509.ParseCertificate(b); err == nil {
		certificate(w, c, opts)
		return nil
	}
	if crl, err := x509.ParseRevocationList(b); err == nil {
		revocationList(w, crl, opts)
		return nil
	}
	if csr, err := x509.ParseCertificateRequest(b); err == nil {
		request(w, csr)
		return nil
	}
	return fmt.Errorf("input is neither PEM nor a DER certificate, CRL or CSR")
}

func certificate(w io.Writer, c *x509.Certificate, opts Options) {
	kind := "Certificate"
	if c.IsCA {
		kind = "CA certificate"
		if bytes.Equal(c.RawIssuer, c.RawSubject) && selfSigned(c) {
			kind = "Root CA certificate (self-signed)"
		}
	}
	fmt.Fprintln(w, kind)
	p := func(k, f string, a ...any) { fmt.Fprintf(w, "    %-22s %s\n", k+":", fmt.Sprintf(f, a...)) }
	p("Subject", "%s", orEmpty(c.Subject.String()))
	p("Issuer", "%s", orEmpty(c.Issuer.String()))
	p("Serial", "%s", hex.EncodeToString(c.SerialNumber.Bytes()))
	p("Not before", "%s", c.NotBefore.UTC().Format(time.RFC3339))
	p("Not after", "%s (%s)", c.NotAfter.UTC().Format(time.RFC3339), Remaining(c.NotAfter, opts.Now))
	pub, sig := certAlgorithms(c)
	p("Public key", "%s", pub)
	p("Signature", "%s", sig)
	if c.BasicConstraintsValid {
		bc := "CA:false"
		if c.IsCA {
			bc = "CA:true"
			if c.MaxPathLen > 0 || c.MaxPathLenZero {
				bc += fmt.Sprintf(", pathlen:%d", c.MaxPathLen)
			}
		}
		p("Basic constraints", "%s", bc)
	}
	if ku := keyUsages(c.KeyUsage); ku != "" {
		p("Key usage", "%s", ku)
	}
	if len(c.ExtKeyUsage) > 0 {
		p("Extended key usage", "%s", extKeyUsages(c.ExtKeyUsage))
	}
	for _, u := range c.URIs {
		p("URI SAN", "%s", u)
	}
	for _, d := range c.DNSNames {
		p("DNS SAN", "%s", d)
	}
	for _, ip := range c.IPAddresses {
		p("IP SAN", "%s", ip)
	}
	for _, d := range c.CRLDistributionPoints {
		p("CRL distribution", "%s", d)
	}
	for _, e := range c.Extensions {
		if name, ok := ExtensionNames[e.Id.String()]; ok {
			crit := ""
			if e.Critical {
				crit = " [critical]"
			}
			p("Extension", "%s %s, %d bytes%s", e.Id, name, len(e.Value), crit)
		}
	}
	if opts.Describer != nil {
		for _, line := range opts.Describer(c) {
			p("Post-quantum", "%s", line)
		}
	}
	sum := sha256.Sum256(c.Raw)
	p("SHA-256 fingerprint", "%s", hex.EncodeToString(sum[:]))
}

func request(w io.Writer, csr *x509.CertificateRequest) {
	fmt.Fprintln(w, "Certificate request")
	p := func(k, f string, a ...any) { fmt.Fprintf(w, "    %-22s %s\n", k+":", fmt.Sprintf(f, a...)) }
	p("Subject", "%s", orEmpty(csr.Subject.String()))
	p("Public key", "%s", KeyString(csr.PublicKey, csr.PublicKeyAlgorithm))
	sig := "valid"
	if err := csr.CheckSignature(); err != nil {
		sig = "INVALID"
	}
	p("Signature", "%s (%s)", csr.SignatureAlgorithm, sig)
	for _, u := range csr.URIs {
		p("URI SAN", "%s", u)
	}
	for _, d := range csr.DNSNames {
		p("DNS SAN", "%s", d)
	}
}

func orEmpty(s string) string {
	if s == "" {
		return "(empty)"
	}
	return s
}

// Remaining describes the time until t, or since it passed.
func Remaining(t, now time.Time) string {
	d := t.Sub(now)
	if d < 0 {
		return "EXPIRED " + human(-d) + " ago"
	}
	return "expires in " + human(d)
}

func human(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	case d >= time.Hour:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		return d.Round(time.Second).String()
	}
}

// KeyString names a public key and its size.
func KeyString(pub any, alg x509.PublicKeyAlgorithm) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return alg.String()
}

func keyUsages(ku x509.KeyUsage) string {
	names := []string{"digitalSignature", "contentCommitment", "keyEncipherment", "dataEncipherment", "keyAgreement", "keyCertSign", "cRLSign", "encipherOnly", "decipherOnly"}
	var out []string
	for i, n := range names {
		if ku&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return strings.Join(out, ", ")
}

func extKeyUsages(ekus []x509.ExtKeyUsage) string {
	names := map[x509.ExtKeyUsage]string{
		x509.ExtKeyUsageServerAuth: "serverAuth", x509.ExtKeyUsageClientAuth: "clientAuth",
		x509.ExtKeyUsageAny: "any", x509.ExtKeyUsageCodeSigning: "codeSigning",
	}
	var out []string
	for _, e := range ekus {
		if n, ok := names[e]; ok {
			out = append(out, n)
		} else {
			out = append(out, fmt.Sprintf("eku(%d)", e))
		}
	}
	return strings.Join(out, ", ")
}

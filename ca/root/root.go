// Package root owns the enterprise-root side of meshca's CA: the root-source
// interface (Source) through which meshca's intermediates are minted
// whatever the root is, loading a root certificate and key from files
// (FileSource), loading a pre-issued intermediate from Istio's four cacerts
// files (CACertsSource), minting meshca's own intermediate under a root,
// and the strict checks on all of that material. It never signs workload
// certificates and keeps no state; the Vault root source is ca/root/vault.
package root

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"go.step.sm/crypto/keyutil"

	"github.com/meshca/meshca/ca/oid"
	"github.com/meshca/meshca/ca/policy"
	"github.com/meshca/meshca/ca/pqc"
	"github.com/meshca/meshca/ca/smallfile"
)

// Istio's cacerts file names (Istio docs, "Plug in CA Certificates").
const (
	CACertFile    = "ca-cert.pem"
	CAKeyFile     = "ca-key.pem"
	CertChainFile = "cert-chain.pem"
	RootCertFile  = "root-cert.pem"
	CRLFile       = "ca-crl.pem"
)

// ReadCertificates reads every CERTIFICATE block of a PEM file. It fails on
// an empty file, a non-certificate block or trailing garbage, naming the
// file, and on anything but a regular file of at most smallfile.MaxSize.
func ReadCertificates(path string) ([]*x509.Certificate, error) {
	b, err := smallfile.Read(path, smallfile.MaxSize)
	var pe *fs.PathError
	switch {
	case errors.As(err, &pe):
		return nil, fmt.Errorf("%s: %w", path, err)
	case err != nil:
		return nil, err // it names the path
	}
	certs, err := ParseCertificates(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return certs, nil
}

// ParseCertificates parses a PEM bundle of certificates.
func ParseCertificates(b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := bytes.TrimSpace(b)
	for len(rest) > 0 {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("contains data that is not PEM")
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("contains a %q block where only CERTIFICATE blocks are allowed", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d does not parse: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
		rest = bytes.TrimSpace(rest)
	}
	if len(certs) == 0 {
		return nil, errors.New("contains no certificate")
	}
	return certs, nil
}

// EncodePEM returns the PEM encoding of certs, in order.
func EncodePEM(certs ...*x509.Certificate) []byte {
	var buf bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return buf.Bytes()
}

// CheckSigningCA checks that c can sign certificates and CRLs.
func CheckSigningCA(c *x509.Certificate) error {
	switch {
	case !c.BasicConstraintsValid || !c.IsCA:
		return errors.New("is not a CA certificate (basicConstraints CA:TRUE is missing)")
	case c.KeyUsage&x509.KeyUsageCertSign == 0:
		return errors.New("lacks the keyCertSign key usage")
	case c.KeyUsage&x509.KeyUsageCRLSign == 0:
		return errors.New("lacks the cRLSign key usage, which Istio needs for ca-crl.pem")
	}
	return nil
}

// CheckIssuer checks that c may issue certificates, as RFC 5280 path
// validation requires of a CA certificate (section 6.1.4 (k) and (n)):
// basicConstraints with cA TRUE and, when c has a keyUsage extension,
// keyCertSign. Without that extension the key's use is not restricted
// (section 4.2.1.3), as crypto/x509 and OpenSSL also hold. Unlike
// CheckSigningCA it does not ask for cRLSign: it judges certificates
// others issued, not meshca's own CA.
func CheckIssuer(c *x509.Certificate) error {
	if !c.BasicConstraintsValid || !c.IsCA {
		return errors.New("is not a CA (basicConstraints cA is not TRUE)")
	}
	if c.KeyUsage&x509.KeyUsageCertSign != 0 {
		return nil
	}
	for _, e := range c.Extensions {
		if e.Id.Equal(oid.KeyUsage) {
			return errors.New("has a keyUsage extension without keyCertSign (RFC 5280 4.2.1.3)")
		}
	}
	return nil
}

// CheckKeyMatches checks that signer's public key is the certificate's.
func CheckKeyMatches(c *x509.Certificate, signer crypto.Signer) error {
	if c.PublicKey == nil {
		// Go does not parse ML-DSA and composite keys: compare the SPKI.
		spki, err := pqc.MarshalPKIXPublicKey(signer.Public())
		if err != nil || !bytes.Equal(spki, c.RawSubjectPublicKeyInfo) {
			return errors.New("the private key does not match the certificate's public key")
		}
		return nil
	}
	if !keyutil.Equal(c.PublicKey, signer.Public()) {
		return errors.New("the private key does not match the certificate's public key")
	}
	return nil
}

// CheckValidAt checks the certificate's validity window.
func CheckValidAt(c *x509.Certificate, now time.Time) error {
	if now.After(c.NotAfter) {
		return fmt.Errorf("expired at %s", c.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(c.NotBefore) {
		return fmt.Errorf("is not valid before %s", c.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

// IntermediateTemplate describes a new intermediate.
type IntermediateTemplate struct {
	CommonName   string
	Organization string
	Lifetime     time.Duration
}

// MintIntermediate signs pub as a pathlen-0 intermediate under parent, with
// keyCertSign|cRLSign, never outliving parent.
func MintIntermediate(parent *x509.Certificate, parentSigner crypto.Signer, pub crypto.PublicKey, t IntermediateTemplate, now time.Time) (*x509.Certificate, error) {
	tmpl, err := intermediateTemplate(parent, t, now)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(nil, tmpl, parent, pub, parentSigner)
	if err != nil {
		return nil, fmt.Errorf("sign intermediate: %w", err)
	}
	return x509.ParseCertificate(der)
}

// intermediateTemplate is the intermediate MintIntermediate and Mint sign:
// pathlen 0, keyCertSign|cRLSign, within the parent's validity.
func intermediateTemplate(parent *x509.Certificate, t IntermediateTemplate, now time.Time) (*x509.Certificate, error) {
	if err := CheckValidAt(parent, now); err != nil {
		return nil, fmt.Errorf("root %s", err)
	}
	serial, err := policy.RandomSerial()
	if err != nil {
		return nil, err
	}
	notBefore := now.Add(-policy.Backdate).Truncate(time.Second)
	if notBefore.Before(parent.NotBefore) {
		notBefore = parent.NotBefore
	}
	notAfter := now.Add(t.Lifetime).Truncate(time.Second)
	if notAfter.After(parent.NotAfter) {
		notAfter = parent.NotAfter
	}
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: t.CommonName, Organization: []string{t.Organization}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, nil
}

// NewSelfSignedRoot creates a self-signed root for development and tests.
func NewSelfSignedRoot(signer crypto.Signer, commonName, org string, lifetime time.Duration, now time.Time) (*x509.Certificate, error) {
	tmpl, err := rootTemplate(commonName, org, lifetime, now)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, signer.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("sign root: %w", err)
	}
	return x509.ParseCertificate(der)
}

// rootTemplate is the self-signed root NewSelfSignedRoot and NewRoot sign.
func rootTemplate(commonName, org string, lifetime time.Duration, now time.Time) (*x509.Certificate, error) {
	serial, err := policy.RandomSerial()
	if err != nil {
		return nil, err
	}
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{org}},
		NotBefore:             now.Add(-policy.Backdate).Truncate(time.Second),
		NotAfter:              now.Add(lifetime).Truncate(time.Second),
		BasicConstraintsValid: true,
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, nil
}

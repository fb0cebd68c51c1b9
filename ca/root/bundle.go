package root

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"time"
)

// Bundle is a signing CA with its chain and trust anchors.
type Bundle struct {
	// Cert is the signing (intermediate) certificate.
	Cert *x509.Certificate
	// Intermediates are the certificates above Cert that are not roots, in
	// order toward the root.
	Intermediates []*x509.Certificate
	// Roots are the trust anchors; the first is the one Cert chains to.
	Roots []*x509.Certificate
}

// Verify checks that Cert chains through Intermediates to one of Roots at
// now: with crypto/x509 for classical and Catalyst chains (whose classical
// signatures are what Envoy checks), with ca/pqc for chains signed with
// ML-DSA or composite keys, which crypto/x509 cannot verify.
func (b *Bundle) Verify(now time.Time) error {
	for _, c := range append([]*x509.Certificate{b.Cert}, b.Intermediates...) {
		if SignedPostQuantum(c) {
			return b.verifyPQ(now)
		}
	}
	rootPool, interPool := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range b.Roots {
		rootPool.AddCert(r)
	}
	for _, c := range b.Intermediates {
		interPool.AddCert(c)
	}
	_, err := b.Cert.Verify(x509.VerifyOptions{
		Roots: rootPool, Intermediates: interPool, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	return err
}

// Chain returns Cert, its intermediates and the root it chains to — the
// content of Istio's cert-chain.pem.
func (b *Bundle) Chain() []*x509.Certificate {
	out := append([]*x509.Certificate{b.Cert}, b.Intermediates...)
	top := out[len(out)-1]
	for _, r := range b.Roots {
		if IssuedBy(top, r) {
			return append(out, r)
		}
	}
	return out
}

// SplitChain separates a cert-chain.pem (signing cert first, root last) into
// intermediates and self-signed roots.
func SplitChain(chain []*x509.Certificate) (inters, roots []*x509.Certificate) {
	for _, c := range chain {
		if isSelfSigned(c) {
			roots = append(roots, c)
		} else {
			inters = append(inters, c)
		}
	}
	return inters, roots
}

func isSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && CheckSignatureFrom(c, c) == nil
}

// LoadCACertsDir loads a pre-issued intermediate given as Istio's four files
// and checks it strictly: the signing cert is a CA with certSign and cRLSign,
// the key matches, cert-chain.pem starts with it, and it verifies to
// root-cert.pem. loadKey turns the key file path into a signer (so that key
// custody and permission checks stay in one place).
func LoadCACertsDir(dir string, loadKey func(path string) (crypto.Signer, error), now time.Time) (*Bundle, crypto.Signer, error) {
	file := func(n string) string { return filepath.Join(dir, n) }
	caCerts, err := ReadCertificates(file(CACertFile))
	if err != nil {
		return nil, nil, err
	}
	ca, err := signingCertOf(caCerts, file(CACertFile), now)
	if err != nil {
		return nil, nil, err
	}
	signer, err := loadKey(file(CAKeyFile))
	if err != nil {
		return nil, nil, err
	}
	if err := CheckKeyMatches(ca, signer); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", file(CAKeyFile), err)
	}
	chain, err := ReadCertificates(file(CertChainFile))
	if err != nil {
		return nil, nil, err
	}
	roots, err := ReadCertificates(file(RootCertFile))
	if err != nil {
		return nil, nil, err
	}
	for i, r := range roots {
		if !isSelfSigned(r) || !r.IsCA {
			return nil, nil, fmt.Errorf("%s: certificate %d (%s) is not a self-signed CA", file(RootCertFile), i+1, r.Subject)
		}
	}
	b, err := cacertsBundle(ca, chain, roots, file, now)
	if err != nil {
		return nil, nil, err
	}
	return b, signer, nil
}

// CACertsBundle checks the public files of Istio's cacerts (ca-cert.pem,
// cert-chain.pem, root-cert.pem, given PEM-encoded in files by those
// names) as LoadCACertsDir does, except that the certificates of
// root-cert.pem need not be self-signed (a file root, root.file.rootCert,
// may be an enterprise issuing CA), and returns their bundle; name(file)
// is how an error names each file.
func CACertsBundle(files map[string][]byte, name func(file string) string, now time.Time) (*Bundle, error) {
	parsed := map[string][]*x509.Certificate{}
	for _, n := range []string{CACertFile, CertChainFile, RootCertFile} {
		certs, err := ParseCertificates(files[n])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name(n), err)
		}
		parsed[n] = certs
	}
	ca, err := signingCertOf(parsed[CACertFile], name(CACertFile), now)
	if err != nil {
		return nil, err
	}
	return cacertsBundle(ca, parsed[CertChainFile], parsed[RootCertFile], name, now)
}

// signingCertOf is the one certificate of ca-cert.pem (named file), a
// signing CA valid at now.
func signingCertOf(certs []*x509.Certificate, file string, now time.Time) (*x509.Certificate, error) {
	if len(certs) != 1 {
		return nil, fmt.Errorf("%s: holds %d certificates; it must hold only the signing certificate", file, len(certs))
	}
	if err := CheckSigningCA(certs[0]); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if err := CheckValidAt(certs[0], now); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return certs[0], nil
}

// cacertsBundle checks that cert-chain.pem starts with the signing
// certificate ca and that ca verifies to one of roots through the chain
// (RFC 5280 section 6.1).
func cacertsBundle(ca *x509.Certificate, chain, roots []*x509.Certificate, file func(string) string, now time.Time) (*Bundle, error) {
	if !chain[0].Equal(ca) {
		return nil, fmt.Errorf("%s: must start with the certificate in %s", file(CertChainFile), CACertFile)
	}
	inters, _ := SplitChain(chain[1:])
	b := &Bundle{Cert: ca, Intermediates: inters, Roots: roots}
	if err := b.Verify(now); err != nil {
		return nil, fmt.Errorf("%s does not verify to %s: %w", file(CACertFile), file(RootCertFile), err)
	}
	return b, nil
}

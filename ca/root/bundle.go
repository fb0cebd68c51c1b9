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
		if bytes.Equal(top.RawIssuer, r.RawSubject) && CheckSignatureFrom(top, r) == nil {
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
	if len(caCerts) != 1 {
		return nil, nil, fmt.Errorf("%s: holds %d certificates; it must hold only the signing certificate", file(CACertFile), len(caCerts))
	}
	ca := caCerts[0]
	if err := CheckSigningCA(ca); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", file(CACertFile), err)
	}
	if err := CheckValidAt(ca, now); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", file(CACertFile), err)
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
	if !chain[0].Equal(ca) {
		return nil, nil, fmt.Errorf("%s: must start with the certificate in %s", file(CertChainFile), CACertFile)
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
	inters, _ := SplitChain(chain[1:])
	b := &Bundle{Cert: ca, Intermediates: inters, Roots: roots}
	if err := b.Verify(now); err != nil {
		return nil, nil, fmt.Errorf("%s does not verify to %s: %w", file(CACertFile), file(RootCertFile), err)
	}
	return b, signer, nil
}

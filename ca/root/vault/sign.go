package vault

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/meshca/meshca/ca/root"
)

// CSRFor returns a DER CSR with subject CN=cn, signed by signer (a key
// from keys.Manager). Only the CSR goes to Vault, never the key.
func CSRFor(signer crypto.Signer, cn string) ([]byte, error) {
	return CSRForSubject(signer, pkix.Name{CommonName: cn})
}

// CSRForSubject is CSRFor with a full subject. The CSR requests no
// extensions: Vault's use_csr_values would copy them into the certificate.
func CSRForSubject(signer crypto.Signer, subject pkix.Name) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subject}, signer)
	if err != nil {
		return nil, fmt.Errorf("create intermediate CSR: %w", err)
	}
	return der, nil
}

// SignIntermediate has Vault sign csrDER as a pathlen-0 intermediate
// (<mount>/root/sign-intermediate, or issuer/<ref>/sign-intermediate) and
// checks the result strictly before returning it: it carries the CSR's
// key, is a CA with pathlen 0 and keyCertSign|cRLSign, chains to Vault's
// root (the pinned one, when configured) and lives as long as asked,
// within tolerance, or until its issuer expires. chain holds the
// certificates above cert, toward the root, ending with the root.
func (s *Source) SignIntermediate(ctx context.Context, csrDER []byte, commonName string, ttl time.Duration) (*x509.Certificate, []*x509.Certificate, error) {
	if !s.validated.Load() {
		return nil, nil, s.notValidated("sign-intermediate")
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, nil, fmt.Errorf("sign-intermediate: the CSR does not parse: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, nil, fmt.Errorf("sign-intermediate: the CSR's signature is invalid: %w", err)
	}
	if ttl < time.Minute {
		return nil, nil, fmt.Errorf("sign-intermediate: lifetime %s is too short", ttl)
	}
	requestedAt := s.now()
	sec, err := s.write(ctx, "sign-intermediate", s.signPath, map[string]any{
		"csr":             string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER})),
		"common_name":     commonName,
		"ttl":             fmt.Sprintf("%ds", int64(ttl/time.Second)),
		"use_csr_values":  true,
		"max_path_length": 0,
		"format":          "pem",
	})
	if err != nil {
		return nil, nil, err
	}
	if sec == nil {
		return nil, nil, fmt.Errorf("vault sign-intermediate: %s returned nothing", s.signPath)
	}
	certPEM, _ := sec.Data["certificate"].(string)
	certs, err := root.ParseCertificates([]byte(certPEM))
	if err != nil {
		return nil, nil, fmt.Errorf("vault sign-intermediate: the returned certificate: %w", err)
	}
	cert := certs[0]
	var chain []*x509.Certificate
	list, _ := sec.Data["ca_chain"].([]any)
	for i, v := range list {
		p, _ := v.(string)
		cs, err := root.ParseCertificates([]byte(p))
		if err != nil {
			return nil, nil, fmt.Errorf("vault sign-intermediate: ca_chain[%d]: %w", i, err)
		}
		for _, c := range cs {
			if !c.Equal(cert) && !containsCert(chain, c) {
				chain = append(chain, c)
			}
		}
	}
	t := s.trust.Load()
	path, truncated, err := checkIntermediate(cert, chain, intermediatePolicy{
		mount: s.cfg.Mount, roots: t.roots, vaultIssuer: t.issuer, pub: csr.PublicKey, ttl: ttl,
		requestedAt: requestedAt, tolerance: s.cfg.LifetimeTolerance.Duration,
	})
	if err != nil {
		if w := lifetimeWarnings(sec.Warnings); len(w) > 0 {
			err = fmt.Errorf("%w (Vault warned: %s)", err, strings.Join(w, "; "))
		}
		return nil, nil, fmt.Errorf("root.vault: refusing the intermediate Vault signed at %s: %w", s.signPath, err)
	}
	if truncated {
		s.log.Warn("vault cut the intermediate's lifetime at its issuer's expiry; rotate the root in Vault", "not_after", cert.NotAfter, "asked", ttl)
	}
	s.log.Info("vault signed an intermediate", "subject", cert.Subject.String(), "serial", cert.SerialNumber.Text(16),
		"not_after", cert.NotAfter, "issuer", cert.Issuer.String())
	return cert, path[1:], nil
}

// intermediatePolicy is what a Vault-signed intermediate must satisfy.
type intermediatePolicy struct {
	mount       string
	roots       []*x509.Certificate
	vaultIssuer *x509.Certificate
	pub         crypto.PublicKey
	ttl         time.Duration
	requestedAt time.Time
	tolerance   time.Duration
}

// checkIntermediate validates what Vault returned and returns the verified
// path from cert to the root. truncated reports an accepted lifetime cut
// at the issuer's own expiry.
func checkIntermediate(cert *x509.Certificate, chain []*x509.Certificate, p intermediatePolicy) (path []*x509.Certificate, truncated bool, err error) {
	if k, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(p.pub) {
		return nil, false, errors.New("its public key is not the one in meshca's CSR")
	}
	if err := root.CheckSigningCA(cert); err != nil {
		return nil, false, fmt.Errorf("it %w", err)
	}
	if cert.MaxPathLen != 0 || !cert.MaxPathLenZero {
		return nil, false, fmt.Errorf("its path length constraint is %d, not 0 (max_path_length=0 was not honoured)", cert.MaxPathLen)
	}
	rootPool, interPool := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range p.roots {
		rootPool.AddCert(r)
	}
	for _, c := range append(chain, p.vaultIssuer) {
		if c != nil && c.CheckSignatureFrom(c) != nil {
			interPool.AddCert(c)
		}
	}
	at := p.requestedAt
	if cert.NotBefore.After(at) {
		at = cert.NotBefore
	}
	paths, err := cert.Verify(x509.VerifyOptions{
		Roots: rootPool, Intermediates: interPool, CurrentTime: at,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, false, fmt.Errorf("it does not chain to Vault's root %q (SHA-256 %s): %w", p.roots[0].Subject, Fingerprint(p.roots[0]), err)
	}
	path = paths[0]
	for _, c := range path[1:] {
		if cert.NotAfter.After(c.NotAfter) {
			return nil, false, fmt.Errorf("it outlives %q: %s is after %s", c.Subject, cert.NotAfter.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	if cert.NotBefore.After(p.requestedAt.Add(p.tolerance)) {
		return nil, false, fmt.Errorf("it is not valid before %s, in the future (are Vault's and meshca's clocks in sync?)", cert.NotBefore.UTC().Format(time.RFC3339))
	}
	want := p.requestedAt.Add(p.ttl)
	if cert.NotAfter.After(want.Add(p.tolerance)) {
		return nil, false, fmt.Errorf("it lives until %s, longer than the %s asked", cert.NotAfter.UTC().Format(time.RFC3339), p.ttl)
	}
	if cert.NotAfter.Before(want.Add(-p.tolerance)) {
		if cert.NotAfter.Equal(path[1].NotAfter) {
			return path, true, nil
		}
		got := cert.NotAfter.Sub(p.requestedAt).Round(time.Minute)
		return nil, false, fmt.Errorf("the intermediate's lifetime was shortened by Vault to %s (asked %s): the mount's max lease TTL caps it; raise it (vault secrets tune -max-lease-ttl=%s %s) or lower intermediate.lifetime",
			got, p.ttl, p.ttl, p.mount)
	}
	return path, false, nil
}

// lifetimeWarnings keeps Vault's warnings about TTLs and notAfter, which
// explain a shortened lifetime, and drops the rest (AIA, path length).
func lifetimeWarnings(warnings []string) []string {
	var out []string
	for _, w := range warnings {
		if strings.Contains(w, "TTL") || strings.Contains(w, "notAfter") {
			out = append(out, w)
		}
	}
	return out
}

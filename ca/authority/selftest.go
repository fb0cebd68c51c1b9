package authority

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/meshca/meshca/ca/certenc"
	"github.com/meshca/meshca/ca/policy"
	"github.com/meshca/meshca/ca/pqc"
)

// selfTestName is the DNS name of the throwaway leaf; .invalid is
// reserved and never resolves (RFC 2606 section 2).
const selfTestName = "rotation-self-test.meshca.invalid"

// SelfTest signs a throwaway leaf with m, as the CA signs workload
// certificates (its default leaf profile), and verifies it: its classical
// chain with crypto/x509 up to one of m's roots (RFC 5280 section 6) for
// the classical and catalyst profiles, and its post-quantum signatures
// (the Catalyst alternative signature, X.509 clause 9.8, or the composite
// or ML-DSA signature) up to m's post-quantum trust anchors. The leaf is
// neither recorded nor returned. A CA that passes signs what it is asked
// to; one whose key does not match its certificate, or whose chain does
// not reach a root, fails before it is activated.
func (m *Material) SelfTest(now time.Time) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := policy.RandomSerial()
	if err != nil {
		return err
	}
	issuer := m.Bundle.Cert
	notAfter := now.Add(time.Hour).Truncate(time.Second)
	if notAfter.After(issuer.NotAfter) {
		notAfter = issuer.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, NotBefore: now.Add(-time.Minute).Truncate(time.Second), NotAfter: notAfter,
		DNSNames: []string{selfTestName}, PublicKey: &key.PublicKey,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	if tmpl.SubjectKeyId, err = subjectKeyID(&key.PublicKey); err != nil {
		return err
	}
	der, err := m.issue(tmpl, m.Profile.DefaultLeaf(), certenc.VerifyAuto)
	if err != nil {
		return fmt.Errorf("sign the throwaway leaf: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("the throwaway leaf does not parse: %w", err)
	}
	if !m.Profile.PostQuantum() || m.AltSigner != nil {
		// Classical and catalyst: the classical chain is what Envoy checks.
		if _, err := leaf.Verify(x509.VerifyOptions{
			Roots: m.rootPool, Intermediates: m.interPool, CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}); err != nil {
			return fmt.Errorf("the throwaway leaf does not verify to the roots: %w", err)
		}
	}
	if m.Profile.PostQuantum() {
		if err := pqc.VerifyChain(append([]*x509.Certificate{leaf}, m.Bundle.Chain()...), m.PQAnchors()...); err != nil {
			return fmt.Errorf("the throwaway leaf's post-quantum signature does not verify: %w", err)
		}
	}
	return nil
}

package publish

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"

	"go.step.sm/crypto/keyutil"

	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/trustbundle/cacerts"
)

// MaxObjectBytes is the size limit of a ConfigMap's or Secret's data and of
// a ClusterTrustBundle's trustBundle: 1 MiB.
const MaxObjectBytes = 1 << 20

// Desired is the trust material meshca wants published. Update replaces the
// whole of it; the zero parts say what is not published.
type Desired struct {
	// Bundle is the signing CA: ca-cert.pem and cert-chain.pem of the
	// cacerts Secret. It is needed only with Key.
	Bundle *root.Bundle
	// Key is Bundle.Cert's private key. Without it meshca writes no cacerts
	// Secret (and never deletes one it wrote before).
	Key crypto.PrivateKey
	// CRLs are PEM "X509 CRL" blocks: ca-crl.pem in the Secret and the CRL
	// ConfigMaps. Empty means none is published yet; ConfigMaps published
	// earlier keep their last CRL.
	CRLs []byte
	// Roots are the trust anchors to publish, in order; during a rotation
	// they hold the old and the new root. Empty means Bundle.Roots.
	Roots []*x509.Certificate
	// PQAnchors are the post-quantum trust anchors, "PUBLIC KEY" PEM blocks
	// of ML-DSA or composite SubjectPublicKeyInfos (authority.Material's
	// PQAnchorsPEM). They are published byte for byte in the ConfigMap
	// meshca-pq-trust-anchors of istiod's namespace and in the annotation
	// meshca.io/pq-trust-anchors of meshca's signer bundles. Empty (a
	// classical CA) withdraws what meshca published before, so that no
	// stale anchor stays trusted.
	PQAnchors []byte
}

// state is a validated Desired, with everything that does not depend on
// what the cluster holds computed once.
type state struct {
	roots    []*x509.Certificate // deduplicated, in order
	rootsPEM []byte              // EncodePEM(roots): the ClusterTrustBundle content
	// files is the cacerts Secret content without root-cert.pem, which
	// follows the byte-append rule against the published bytes. Nil without
	// a key.
	files map[string][]byte
	crl   []byte
	// pqAnchors is Desired.PQAnchors; empty withdraws them.
	pqAnchors []byte
}

func compile(d Desired) (*state, error) {
	roots := d.Roots
	if len(roots) == 0 && d.Bundle != nil {
		roots = d.Bundle.Roots
	}
	if len(roots) == 0 {
		return nil, errors.New("publish: no roots to publish: set Desired.Roots or Desired.Bundle.Roots")
	}
	st := &state{}
	for i, r := range roots {
		if r == nil {
			return nil, fmt.Errorf("publish: root %d is nil", i+1)
		}
		if !r.BasicConstraintsValid || !r.IsCA {
			return nil, fmt.Errorf("publish: root %d (%s) is not a CA certificate; ClusterTrustBundles and istiod accept CA certificates only", i+1, r.Subject)
		}
		if !containsCert(st.roots, r) {
			st.roots = append(st.roots, r)
		}
	}
	st.rootsPEM = root.EncodePEM(st.roots...)
	if len(d.CRLs) > 0 {
		if err := checkCRLs(d.CRLs); err != nil {
			return nil, err
		}
		st.crl = bytes.Clone(d.CRLs)
	}
	if len(d.PQAnchors) > 0 {
		if err := checkPQAnchors(d.PQAnchors); err != nil {
			return nil, err
		}
		st.pqAnchors = bytes.Clone(d.PQAnchors)
	}
	if d.Key == nil {
		return st, nil
	}
	if d.Bundle == nil || d.Bundle.Cert == nil {
		return nil, errors.New("publish: Desired.Key is set without Desired.Bundle: the cacerts Secret needs the signing certificate")
	}
	if err := checkKeyMatches(d.Bundle.Cert, d.Key); err != nil {
		return nil, err
	}
	files, err := cacerts.Files(d.Bundle, d.Key, st.crl)
	if err != nil {
		return nil, fmt.Errorf("publish: cacerts content: %w", err)
	}
	delete(files, cacerts.KeyRootCert)
	st.files = files
	return st, nil
}

func checkKeyMatches(cert *x509.Certificate, key crypto.PrivateKey) error {
	pub, err := keyutil.PublicKey(key)
	if err != nil {
		return fmt.Errorf("publish: Desired.Key: %w", err)
	}
	if !keyutil.Equal(cert.PublicKey, pub) {
		return fmt.Errorf("publish: Desired.Key does not match the signing certificate %s", cert.Subject)
	}
	return nil
}

// checkCRLs accepts one or more PEM "X509 CRL" blocks that parse.
func checkCRLs(b []byte) error {
	rest := bytes.TrimSpace(b)
	n := 0
	for len(rest) > 0 {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return errors.New("publish: Desired.CRLs holds data that is not PEM")
		}
		n++
		if block.Type != "X509 CRL" {
			return fmt.Errorf("publish: Desired.CRLs block %d is %q; only X509 CRL blocks are allowed", n, block.Type)
		}
		if _, err := x509.ParseRevocationList(block.Bytes); err != nil {
			return fmt.Errorf("publish: Desired.CRLs block %d: %w", n, err)
		}
		rest = bytes.TrimSpace(rest)
	}
	if n == 0 {
		return errors.New("publish: Desired.CRLs holds no CRL")
	}
	return nil
}

func containsCert(certs []*x509.Certificate, c *x509.Certificate) bool {
	for _, x := range certs {
		if x.Equal(c) {
			return true
		}
	}
	return false
}

// sameCertSet reports whether the PEM bundle b holds exactly the
// certificates want (any order, duplicates ignored). Unparsable b is not.
func sameCertSet(b []byte, want []*x509.Certificate) bool {
	got, err := root.ParseCertificates(b)
	if err != nil {
		return false
	}
	for _, g := range got {
		if !containsCert(want, g) {
			return false
		}
	}
	for _, w := range want {
		if !containsCert(got, w) {
			return false
		}
	}
	return true
}

// publishedRoots returns the root-cert.pem bytes to publish where old is
// what the object holds now: old itself when it already holds exactly the
// roots, else cacerts.MergeRoots (the byte-append rule), else, when old does
// not parse, the roots encoded afresh. Bytes meshca did not write (CRLF,
// blank lines, openssl's subject= lines) are kept: istiod refuses a
// root-cert.pem whose bytes neither contain nor are contained in the old.
func publishedRoots(old []byte, roots []*x509.Certificate) []byte {
	if len(old) > 0 && sameCertSet(old, roots) {
		return old
	}
	merged, err := cacerts.MergeRoots(old, roots)
	if err != nil {
		return root.EncodePEM(roots...)
	}
	return merged
}

// fingerprint is the lower-case hex SHA-256 of c's DER.
func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

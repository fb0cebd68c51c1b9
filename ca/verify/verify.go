// Package verify checks a certificate chain the way `meshca verify`
// reports it: as a list of named checks, each passed, failed or not
// applicable.
//
//   - Classical: each classical signature with crypto/x509, then crypto/x509
//     path validation up to the trusted roots (what Envoy does).
//   - Post-quantum (Options.PQ): every ML-DSA alternative signature
//     (Catalyst), composite signature (both components) and pure ML-DSA
//     signature, walked up to a trusted post-quantum key (a root's own key or
//     its 2.5.29.72, or a bare anchor such as pq-anchor.pem), and the same
//     chain through pqc.VerifyChain, which decides.
//
// It owns no cryptography (crypto/x509 and ca/pqc do) and reads no files.
package verify

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/meshca/meshca/ca/pqc"
	"github.com/meshca/meshca/ca/root"
)

// Check is one verification step.
type Check struct {
	// Name says what was checked, e.g. "pq: chain[0] alt signature
	// (ML-DSA-65) by chain[1]'s alt public key (2.5.29.72)".
	Name string
	// Err is why it failed; nil when it passed or was skipped.
	Err error
	// Skipped says why the check does not apply; empty when it ran.
	Skipped string
}

// Options configure Chain.
type Options struct {
	// Roots are the trusted roots: for crypto/x509, and for the
	// post-quantum walk through their own ML-DSA/composite key or 2.5.29.72.
	Roots []*x509.Certificate
	// PQ verifies the post-quantum signatures too.
	PQ bool
	// PQAnchors are further trusted post-quantum keys (pq-anchor.pem).
	PQAnchors []pqc.TrustAnchor
	// Now is the verification time; zero means time.Now.
	Now time.Time
}

// Report is the outcome of Chain.
type Report struct {
	Checks []Check
	// Classical and PostQuantum report which chains were verified, fully.
	Classical, PostQuantum bool
}

// Err returns the failures joined, an error when nothing at all was
// verified, or nil.
func (r *Report) Err() error {
	var errs []error
	ran := false
	for _, c := range r.Checks {
		if c.Err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.Name, c.Err))
		}
		if c.Skipped == "" {
			ran = true
		}
	}
	if len(errs) == 0 && !ran {
		return errors.New("nothing was verified (the chain has no classical signatures; verify it with --pq)")
	}
	return errors.Join(errs...)
}

func (r *Report) add(name string, err error) error {
	r.Checks = append(r.Checks, Check{Name: name, Err: err})
	return err
}

func (r *Report) skip(name, why string) {
	r.Checks = append(r.Checks, Check{Name: name, Skipped: why})
}

// Chain verifies chain (leaf first, as `meshca sign` prints it: leaf,
// intermediates, roots). Self-issued certificates in chain are ignored:
// trust comes from opts only.
func Chain(chain []*x509.Certificate, opts Options) *Report {
	r := &Report{}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	if len(chain) == 0 {
		r.add("chain", errors.New("no certificates"))
		return r
	}
	path := []*x509.Certificate{chain[0]}
	for _, c := range chain[1:] {
		if !bytes.Equal(c.RawIssuer, c.RawSubject) {
			path = append(path, c)
		}
	}
	top := path[len(path)-1]
	anchorRoot := issuerRoot(top, opts.Roots)
	full := path
	if anchorRoot != nil {
		full = append(append([]*x509.Certificate{}, path...), anchorRoot)
	}
	pqSigned := false
	for _, c := range full {
		pqSigned = pqSigned || root.SignedPostQuantum(c)
	}
	if pqSigned {
		r.skip("classical chain (Go crypto/x509)", "the chain is signed with post-quantum keys ("+sigName(full[0])+"), which crypto/x509 cannot verify; verify it with --pq")
	} else {
		classical(r, full, path, opts)
	}
	if opts.PQ {
		postQuantum(r, full, pqSigned, opts)
	}
	return r
}

// issuerRoot is the trusted root that issued top (root.IssuedBy): during a
// root rotation the trust bundle holds two roots of one name, and the
// report names the one whose key signed. When none did, it is the first
// root of top's issuer name, so that the report shows its signature check
// failing; nil when no root has that name.
func issuerRoot(top *x509.Certificate, roots []*x509.Certificate) *x509.Certificate {
	var named *x509.Certificate
	for _, rc := range roots {
		if !bytes.Equal(top.RawIssuer, rc.RawSubject) {
			continue
		}
		if root.IssuedBy(top, rc) {
			return rc
		}
		if named == nil {
			named = rc
		}
	}
	return named
}

func classical(r *Report, full, path []*x509.Certificate, opts Options) {
	for i := 0; i+1 < len(full); i++ {
		r.add(fmt.Sprintf("classical: chain[%d] (%s) %s signature by chain[%d] (%s)", i, name(full[i]), full[i].SignatureAlgorithm, i+1, name(full[i+1])),
			full[i].CheckSignatureFrom(full[i+1]))
	}
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	for _, rc := range opts.Roots {
		roots.AddCert(rc)
	}
	for _, c := range path[1:] {
		inters.AddCert(c)
	}
	_, err := path[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, CurrentTime: opts.Now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	r.add(fmt.Sprintf("classical: path validation up to %d trusted root(s) (Go crypto/x509)", len(opts.Roots)), err)
	r.Classical = r.Err() == nil
}

// postQuantum walks the PQ signatures the way pqc.VerifyChain does,
// reporting each, then lets pqc.VerifyChain decide.
func postQuantum(r *Report, full []*x509.Certificate, pqSigned bool, opts Options) {
	if sigs, err := signatures(full[0]); err != nil || len(sigs) == 0 {
		if err == nil {
			err = fmt.Errorf("%w: it is a classical certificate, with nothing post-quantum to verify", pqc.ErrNoPQSignature)
		}
		r.add(fmt.Sprintf("pq: chain[0] (%s) post-quantum signature", name(full[0])), err)
		return
	}
	anchors := append([]pqc.TrustAnchor{}, opts.PQAnchors...)
	for _, rc := range opts.Roots {
		if a, err := pqc.AnchorFromCertificate(rc); err == nil {
			anchors = append(anchors, a)
		}
	}
	if len(anchors) == 0 {
		r.add("pq: trusted post-quantum keys", errors.New("none: the trusted roots carry no ML-DSA or composite key; give meshca's pq-anchor.pem"))
		return
	}
	if pqSigned {
		var errs []error
		for i, c := range full {
			if err := root.CheckValidAt(c, opts.Now); err != nil {
				errs = append(errs, fmt.Errorf("chain[%d] %w", i, err))
			}
			if i == 0 {
				continue
			}
			if err := root.CheckIssuer(c); err != nil {
				errs = append(errs, fmt.Errorf("chain[%d] %w", i, err))
			}
		}
		r.add("pq: validity periods and CA constraints", errors.Join(errs...))
	}
	walk(r, full, anchors)
	before := len(r.Checks)
	r.add(fmt.Sprintf("pq: chain anchored at a trusted post-quantum key (%d trusted; pqc.VerifyChain)", len(anchors)), pqc.VerifyChain(full, anchors...))
	failed := false
	for _, c := range r.Checks[:before] {
		failed = failed || (c.Err != nil && strings.HasPrefix(c.Name, "pq:"))
	}
	r.PostQuantum = !failed && r.Checks[before].Err == nil
}

func walk(r *Report, full []*x509.Certificate, anchors []pqc.TrustAnchor) {
	for i, c := range full {
		sigs, err := signatures(c)
		if err != nil || len(sigs) == 0 {
			if err == nil {
				err = pqc.ErrNoPQSignature
			}
			r.add(fmt.Sprintf("pq: chain[%d] (%s) post-quantum signature", i, name(c)), err)
			return
		}
		anchored := false
		for _, s := range sigs {
			if a, ok := verifiesUnder(s, anchors); ok {
				r.add(fmt.Sprintf("pq: chain[%d] (%s) %s by trusted anchor %q", i, name(c), s.desc, a), nil)
				anchored = true
				continue
			}
			j := i + 1
			if j == len(full) {
				if !bytes.Equal(c.RawIssuer, c.RawSubject) {
					r.add(fmt.Sprintf("pq: chain[%d] (%s) %s", i, name(c), s.desc), fmt.Errorf("%w: its issuer is not among the trusted roots", pqc.ErrNotAnchored))
					return
				}
				r.add(fmt.Sprintf("pq: chain[%d] (%s) %s", i, name(c), s.desc), fmt.Errorf("%w: self-signed, but its key is not trusted", pqc.ErrNotAnchored))
				return
			}
			keyName, spki := s.issuerKey(full[j])
			err := s.verify(spki)
			if spki == nil {
				err = fmt.Errorf("%w: no subjectAltPublicKeyInfo (2.5.29.72)", pqc.ErrNoPQPublicKey)
			}
			if r.add(fmt.Sprintf("pq: chain[%d] (%s) %s by chain[%d] (%s)'s %s", i, name(c), s.desc, j, name(full[j]), keyName), err) != nil {
				return
			}
		}
		if anchored {
			return
		}
	}
}

// sig is one post-quantum signature of a certificate.
type sig struct {
	desc string
	alt  bool
	c    *x509.Certificate
}

func (s sig) verify(spki []byte) error {
	if s.alt {
		return pqc.VerifyAltSignature(s.c, spki)
	}
	return pqc.VerifyCertificateSignature(s.c, spki)
}

func (s sig) issuerKey(issuer *x509.Certificate) (string, []byte) {
	if !s.alt {
		return "public key", issuer.RawSubjectPublicKeyInfo
	}
	spki, _ := root.AltPublicKeyInfo(issuer)
	return "alt public key (2.5.29.72)", spki
}

func signatures(c *x509.Certificate) ([]sig, error) {
	d, err := pqc.Describe(c)
	if err != nil {
		return nil, err
	}
	var out []sig
	if d.Signature.Family == pqc.FamilyMLDSA || d.Signature.Family == pqc.FamilyComposite {
		kind := "signature"
		if d.Signature.Family == pqc.FamilyComposite {
			kind = "composite signature (both components)"
		}
		out = append(out, sig{desc: fmt.Sprintf("%s (%s)", kind, d.Signature.Name), c: c})
	}
	if d.AltSignature != nil {
		out = append(out, sig{desc: fmt.Sprintf("alt signature (%s)", d.AltSignature.Name), alt: true, c: c})
	}
	return out, nil
}

func verifiesUnder(s sig, anchors []pqc.TrustAnchor) (string, bool) {
	for _, a := range anchors {
		if s.verify(a.PublicKeyInfo()) == nil {
			return a.Name(), true
		}
	}
	return "", false
}

func name(c *x509.Certificate) string {
	if s := c.Subject.String(); s != "" {
		return s
	}
	var ids []string
	for _, u := range c.URIs {
		ids = append(ids, u.String())
	}
	if len(ids) > 0 {
		return strings.Join(ids, ",")
	}
	return "serial " + c.SerialNumber.Text(16)
}

func sigName(c *x509.Certificate) string {
	if d, err := pqc.Describe(c); err == nil {
		return d.Signature.Name
	}
	return c.SignatureAlgorithm.String()
}

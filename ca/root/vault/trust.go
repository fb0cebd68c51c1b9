package vault

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/meshca/meshca/ca/root"
)

// trustMaterial is what Vault's mount says about its issuer.
type trustMaterial struct {
	// issuer is the mount's issuing certificate (the root, for a root mount).
	issuer *x509.Certificate
	// roots are the self-signed certificates of the issuer's chain.
	roots []*x509.Certificate
}

// Fingerprint is the lower-case hex SHA-256 of a certificate's DER.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

func (s *Source) issuerPath(suffix string) string {
	if s.cfg.IssuerRef != "" {
		return s.cfg.Mount + "/issuer/" + s.cfg.IssuerRef + "/" + suffix
	}
	return s.cfg.Mount + "/" + suffix
}

// Roots fetches the trust anchors from Vault: the self-signed certificates
// of <mount>/ca_chain and <mount>/cert/ca (or of issuer/<ref>/json when an
// issuer ref is configured). It fails, and keeps the previous roots, when
// the chain has no root, the issuer does not chain to it, or the root does
// not match root.vault.expectedRootFingerprint. Before a deferred
// validation completes it fails with ErrUnavailable without calling Vault.
func (s *Source) Roots(ctx context.Context) ([]*x509.Certificate, error) {
	if !s.validated.Load() {
		return nil, s.notValidated("roots")
	}
	return s.fetchRoots(ctx)
}

func (s *Source) fetchRoots(ctx context.Context) ([]*x509.Certificate, error) {
	issuer, chain, err := s.fetchIssuer(ctx)
	if err != nil {
		return nil, err
	}
	var roots []*x509.Certificate
	for _, c := range append(chain, issuer) {
		if c.IsCA && c.CheckSignatureFrom(c) == nil && !containsCert(roots, c) {
			roots = append(roots, c)
		}
	}
	where := fmt.Sprintf("Vault mount %q", s.cfg.Mount)
	if s.cfg.IssuerRef != "" {
		where += fmt.Sprintf(" issuer %q", s.cfg.IssuerRef)
	}
	if len(roots) == 0 {
		top := append([]*x509.Certificate{issuer}, chain...)[len(chain)]
		return nil, fmt.Errorf("root.vault: the chain of %s ends at %q, which is not a self-signed root; meshca needs the root: import it with the issuer's chain (PKI issuer manual_chain or set-signed with the full chain)", where, top.Subject)
	}
	inters, _ := root.SplitChain(chain)
	b := &root.Bundle{Cert: issuer, Intermediates: inters, Roots: roots}
	if err := b.Verify(s.now()); err != nil {
		return nil, fmt.Errorf("root.vault: the issuer of %s (%s) does not verify to its root: %w", where, issuer.Subject, err)
	}
	if s.rootPin != "" && !containsFingerprint(roots, s.rootPin) {
		return nil, fmt.Errorf("root.vault.expectedRootFingerprint: the root of %s is %q with SHA-256 %s, not the expected %s; meshca does not sign under a root it was not told to trust",
			where, roots[0].Subject, Fingerprint(roots[0]), s.rootPin)
	}
	s.trust.Store(&trustMaterial{issuer: issuer, roots: roots})
	return append([]*x509.Certificate(nil), roots...), nil
}

// CheckStoredRoot checks, without calling Vault, that meshca may sign
// under c, the root of an intermediate Vault signed earlier, while Vault
// is unavailable: it must be the pinned root when
// root.vault.expectedRootFingerprint is set.
func (s *Source) CheckStoredRoot(c *x509.Certificate) error {
	if s.rootPin != "" && Fingerprint(c) != s.rootPin {
		return fmt.Errorf("root.vault.expectedRootFingerprint: its root %q has SHA-256 %s, not the expected %s", c.Subject, Fingerprint(c), s.rootPin)
	}
	return nil
}

// CurrentRoots returns the roots fetched last, without calling Vault; none
// before a deferred validation completes.
func (s *Source) CurrentRoots() []*x509.Certificate {
	if t := s.trust.Load(); t != nil && s.validated.Load() {
		return append([]*x509.Certificate(nil), t.roots...)
	}
	return nil
}

// fetchIssuer returns the mount's issuing certificate and its chain
// (issuer first, toward the root).
func (s *Source) fetchIssuer(ctx context.Context) (*x509.Certificate, []*x509.Certificate, error) {
	var certPEM string
	var chainPEM []byte
	if s.cfg.IssuerRef != "" {
		sec, err := s.read(ctx, "read issuer", s.issuerPath("json"))
		if err != nil || sec == nil {
			return nil, nil, s.mountError("issuer/"+s.cfg.IssuerRef+"/json", err)
		}
		certPEM, _ = sec.Data["certificate"].(string)
		list, _ := sec.Data["ca_chain"].([]any)
		for _, c := range list {
			if p, ok := c.(string); ok {
				chainPEM = append(chainPEM, p+"\n"...)
			}
		}
	} else {
		sec, err := s.read(ctx, "read cert/ca", s.cfg.Mount+"/cert/ca")
		if err != nil || sec == nil {
			return nil, nil, s.mountError("cert/ca", err)
		}
		certPEM, _ = sec.Data["certificate"].(string)
		if chainPEM, err = s.readRaw(ctx, "read ca_chain", s.cfg.Mount+"/ca_chain"); err != nil {
			return nil, nil, s.mountError("ca_chain", err)
		}
	}
	if certPEM == "" {
		return nil, nil, fmt.Errorf("root.vault.mount: the PKI engine at %q has no default issuer; generate or import the root first (vault write %s/root/generate/internal ...)", s.cfg.Mount, s.cfg.Mount)
	}
	issuers, err := root.ParseCertificates([]byte(certPEM))
	if err != nil {
		return nil, nil, fmt.Errorf("root.vault: Vault's issuer certificate at %q: %w", s.cfg.Mount, err)
	}
	issuer := issuers[0]
	var chain []*x509.Certificate
	if len(bytes.TrimSpace(chainPEM)) > 0 {
		if chain, err = root.ParseCertificates(chainPEM); err != nil {
			return nil, nil, fmt.Errorf("root.vault: Vault's ca_chain at %q: %w", s.cfg.Mount, err)
		}
	}
	// ca_chain starts with the issuer; keep what lies above it.
	var above []*x509.Certificate
	for _, c := range chain {
		if !c.Equal(issuer) {
			above = append(above, c)
		}
	}
	return issuer, above, nil
}

// mountError explains a failed read of a PKI path that Vault serves to
// anyone: the mount is wrong or holds no PKI engine (403/404), or the
// engine has no such issuer (400 for the default issuer, 500 for a ref).
func (s *Source) mountError(path string, err error) error {
	if err == nil {
		err = errors.New("no data")
	}
	if errors.Is(err, ErrUnavailable) {
		return err
	}
	var ae *apiError
	if errors.As(err, &ae) {
		err = ae // the policy hint of ErrPermissionDenied would mislead here
	}
	switch statusOf(err) {
	case http.StatusNotFound, http.StatusForbidden, http.StatusMethodNotAllowed, 0:
		return fmt.Errorf("root.vault.mount: no PKI secrets engine is mounted at %q (namespace %q) in Vault at %s: reading %s/%s failed (%w); check the mount path",
			s.cfg.Mount, s.cfg.Namespace, s.cfg.Address, s.cfg.Mount, path, err)
	case http.StatusBadRequest, http.StatusInternalServerError:
		if s.cfg.IssuerRef != "" {
			return fmt.Errorf("root.vault.issuerRef: the PKI engine at %q has no issuer %q (%w); list them with: vault list %s/issuers",
				s.cfg.Mount, s.cfg.IssuerRef, err, s.cfg.Mount)
		}
		return fmt.Errorf("root.vault.mount: the PKI engine at %q has no default issuer (%w); generate or import the root first (vault write %s/root/generate/internal ...), or set issuerRef",
			s.cfg.Mount, err, s.cfg.Mount)
	}
	return fmt.Errorf("root.vault.mount: reading %s/%s: %w", s.cfg.Mount, path, err)
}

// checkSignPolicy asks Vault (sys/capabilities-self) whether the token may
// call sign-intermediate, so that a missing policy fails at start-up and
// not at the first rotation. Tokens without the default policy cannot ask;
// then the check is skipped.
func (s *Source) checkSignPolicy(ctx context.Context) error {
	sec, err := s.write(ctx, "capabilities-self", "sys/capabilities-self", map[string]any{"paths": []string{s.signPath}})
	if errors.Is(err, ErrPermissionDenied) {
		s.log.Warn("cannot check the token's capabilities (sys/capabilities-self is not allowed); sign-intermediate is checked at the first rotation")
		return nil
	}
	if err != nil {
		return err
	}
	var caps []string
	if sec != nil {
		list, _ := sec.Data[s.signPath].([]any)
		for _, c := range list {
			if v, ok := c.(string); ok {
				caps = append(caps, v)
			}
		}
	}
	for _, c := range caps {
		if c == "update" || c == "create" || c == "root" {
			return nil
		}
	}
	return fmt.Errorf("root.vault.auth: the Vault token (%s login) may not call %s (its capabilities there are %v): grant update on that path, as in deploy/examples/vault-policy.hcl",
		s.auth.method(), s.signPath, caps)
}

// CRL fetches the issuer's CRL (<mount>/crl/pem), checks it
// (root.CheckRootCRL: the issuer signed it, a complete CRL with a
// nextUpdate, not dated ahead of the clock) and keeps it, in the store too
// with WithCRLMemory. A CRL the verdict does not take (a lower CRL number
// than the one held, one issued before it, one not valid now while the one
// held of the same number is) is not taken and the one held is returned.
// Before a deferred validation completes it fails with ErrUnavailable
// without calling Vault.
func (s *Source) CRL(ctx context.Context) (*x509.RevocationList, error) {
	if !s.validated.Load() {
		return nil, s.notValidated("read crl")
	}
	return s.fetchCRL(ctx)
}

func (s *Source) fetchCRL(ctx context.Context) (*x509.RevocationList, error) {
	t := s.trust.Load()
	now := s.now()
	cur := s.crl.Load()
	if k, err := s.crlMemory.Recall(ctx, t.issuer, cur, now); err != nil {
		s.log.Warn("cannot read the root CRL kept in the store; comparing with the one held in memory only", "error", err)
	} else if k != nil {
		// Newer than the one held: taken before a restart, or by another
		// replica. Held, as it was before the restart.
		s.crl.Store(k)
		cur = k
	}
	body, err := s.readRaw(ctx, "read crl", s.issuerPath("crl/pem"))
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(body)
	if block == nil || block.Type != "X509 CRL" {
		return nil, fmt.Errorf("root.vault: %s/crl/pem holds no PEM X509 CRL (is the CRL disabled on the mount?)", s.cfg.Mount)
	}
	crl, err := x509.ParseRevocationList(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("root.vault: Vault's CRL does not parse: %w", err)
	}
	v, err := root.CheckRootCRL(crl, cur, t.issuer, now)
	if err != nil {
		return nil, fmt.Errorf("root.vault: %s/crl/pem: the CRL %w", s.cfg.Mount, err)
	}
	switch v {
	case root.KeepOlderNumber, root.KeepIssuedBefore:
		s.log.Warn("vault served an older CRL than the one held (a lower number, or issued before it); keeping the newer one", "held", cur.Number, "served", crl.Number,
			"held_this_update", cur.ThisUpdate, "served_this_update", crl.ThisUpdate)
		return cur, nil
	case root.KeepFresher:
		s.log.Warn("vault's CRL is not valid now (past its nextUpdate, or dated ahead of this host's clock) and the one held is; keeping it", "this_update", crl.ThisUpdate, "next_update", crl.NextUpdate)
		return cur, nil
	case root.TakeStaleCRL:
		s.log.Warn("vault's CRL is past its nextUpdate; Istio may reject it: enable auto_rebuild on the mount (pki/config/crl) or rotate the CRL", "next_update", crl.NextUpdate)
	case root.TakeRenumbered:
		s.log.Warn("vault's CRL has a lower CRL number than the one held, which has expired: the mount's numbering went back (a mount rebuilt from the same key?); taking it, as it is valid now",
			"number", crl.Number, "held", cur.Number)
	}
	if !v.Takes() { // a verdict added without a case above
		return nil, fmt.Errorf("root.vault: %s/crl/pem: the CRL is not taken (verdict %d)", s.cfg.Mount, v)
	}
	if k, err := s.crlMemory.Keep(ctx, t.issuer, crl, cur, v, now); err != nil {
		s.log.Warn("vault's CRL is taken but not kept in the store: a restart compares the next one with the CRL kept before it", "error", err)
	} else {
		crl = k
	}
	s.crl.Store(crl)
	return crl, nil
}

// CurrentCRL returns the last good CRL, without calling Vault; none before
// a deferred validation completes.
func (s *Source) CurrentCRL() *x509.RevocationList {
	if !s.validated.Load() {
		return nil
	}
	return s.crl.Load()
}

// RunCRLRefresh fetches the CRL every CRLRefreshInterval, and earlier when
// the CRL held nears its nextUpdate; failures are retried with backoff
// while the last good CRL is kept. It returns when ctx ends.
func (s *Source) RunCRLRefresh(ctx context.Context) {
	var retry wait.DelayFunc // non-nil while refreshes fail
	var d time.Duration
	attempt := 0
	for {
		if retry == nil {
			d = nextCRLRefresh(s.now(), s.crl.Load(), s.cfg.CRLRefreshInterval.Duration)
		}
		if s.sleep(ctx, d) != nil {
			return
		}
		if !s.validated.Load() {
			continue // completing the deferred validation fetches the CRL
		}
		if _, err := s.CRL(ctx); err != nil {
			if retry == nil {
				retry = s.retryBackoff().DelayFunc()
			}
			d = retry()
			attempt++
			s.log.Warn("vault CRL refresh failed; keeping the last good CRL", "error", err, "attempt", attempt, "retry_in", d)
			continue
		}
		retry, attempt = nil, 0
	}
}

// minCRLRefresh keeps a stale CRL (one Vault does not rebuild) from being
// fetched in a tight loop.
const minCRLRefresh = time.Minute

// nextCRLRefresh is the wait before the next fetch: interval, or less so
// that the fetch happens once three quarters of the CRL's validity
// (thisUpdate to nextUpdate) have passed, but at least minCRLRefresh (or
// interval, if shorter).
func nextCRLRefresh(now time.Time, crl *x509.RevocationList, interval time.Duration) time.Duration {
	d := interval
	if crl != nil && crl.NextUpdate.After(crl.ThisUpdate) {
		due := crl.NextUpdate.Add(-crl.NextUpdate.Sub(crl.ThisUpdate) / 4)
		d = min(d, due.Sub(now))
	}
	return max(d, min(minCRLRefresh, interval))
}

func containsCert(list []*x509.Certificate, c *x509.Certificate) bool {
	for _, x := range list {
		if x.Equal(c) {
			return true
		}
	}
	return false
}

func containsFingerprint(list []*x509.Certificate, fp string) bool {
	for _, c := range list {
		if Fingerprint(c) == fp {
			return true
		}
	}
	return false
}

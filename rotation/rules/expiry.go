package rules

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/meshca/meshca/rotation/alert"
	"github.com/meshca/meshca/rotation/inventory"
)

// RuleCAExpiring is the alert of a CA certificate near or past its notAfter.
const RuleCAExpiring = "CACertificateExpiring"

// Default expiry thresholds: warn when 30% of the lifetime or 7 days are
// left, whichever comes first; critical at 3 days and once expired.
const (
	DefaultWarningFraction = 0.3
	DefaultWarningBefore   = 7 * 24 * time.Hour
	DefaultCriticalBefore  = 3 * 24 * time.Hour
)

// Thresholds say when a certificate's coming expiry is a warning and when
// it is critical.
type Thresholds struct {
	// WarningFraction of the lifetime left (notAfter - notBefore, RFC 5280
	// section 4.1.2.5) raises a warning; so does WarningBefore left,
	// whichever comes first.
	WarningFraction float64
	WarningBefore   time.Duration
	// CriticalBefore left, or expiry, is critical.
	CriticalBefore time.Duration
}

// DefaultThresholds are the defaults above.
func DefaultThresholds() Thresholds {
	return Thresholds{WarningFraction: DefaultWarningFraction, WarningBefore: DefaultWarningBefore, CriticalBefore: DefaultCriticalBefore}
}

// Severity is the severity of a certificate valid [notBefore, notAfter]
// at now, and false when it is not (yet) a problem.
func (t Thresholds) Severity(notBefore, notAfter, now time.Time) (alert.Severity, bool) {
	left := notAfter.Sub(now)
	if left <= t.CriticalBefore {
		return alert.Critical, true
	}
	warn := max(t.WarningBefore, time.Duration(t.WarningFraction*float64(notAfter.Sub(notBefore))))
	if left <= warn {
		return alert.Warning, true
	}
	return "", false
}

// CAExpiry raises RuleCAExpiring for every certificate of the inventory's
// sources (meshca's roots and intermediates, the cacerts Secret) that is
// within its thresholds. ClusterTrustBundle certificates are reported by
// the metrics but never alerted on: meshca's own bundles hold meshca's
// roots, which KindRoot already covers (one alert per root, not one per
// bundle), and a bundle someone else publishes (trust-manager's public
// roots, another CA's) is not meshca's to renew.
type CAExpiry struct {
	Sources    []inventory.Source
	Thresholds Thresholds
	// Skip, when set, leaves certificates out (e.g. a retired
	// intermediate, which stays published until its last leaf expires and
	// is not renewed).
	Skip func(inventory.Certificate) bool
	// Action, when set, says what meshca does about c's expiry; an empty
	// answer falls back to DefaultAction.
	Action func(c inventory.Certificate, now time.Time) string

	mu sync.Mutex
	// listed holds, by index in Sources, what each source listed when it
	// last answered, holder by holder: while a source is down (or answers
	// only in part) the certificates of the holders it did not list are
	// evaluated from it (their alerts stand and escalate), and the other
	// sources' alerts are cleared as usual.
	listed map[int][]inventory.Certificate
}

// Forget implements Forgetter: listings from before this Lease term are
// not trusted (another replica evaluated meanwhile).
func (r *CAExpiry) Forget() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.listed = nil
}

// holder names the object that holds c (a Secret, meshca's roots, one
// generation), whose certificates a source lists together.
type holder struct{ kind, namespace, name string }

func holderOf(c inventory.Certificate) holder { return holder{c.Kind, c.Namespace, c.Name} }

// withLast adds to certs, a source's answer with an error, the
// certificates of prev (its last listing) whose holders certs lacks.
func withLast(certs, prev []inventory.Certificate) []inventory.Certificate {
	have := map[holder]bool{}
	for _, c := range certs {
		have[holderOf(c)] = true
	}
	out := slices.Clone(certs)
	for _, c := range prev {
		if !have[holderOf(c)] {
			out = append(out, c)
		}
	}
	return out
}

// Names implements Rule.
func (r *CAExpiry) Names() []string { return []string{RuleCAExpiring} }

// Evaluate implements Rule.
//
// A source that answers with an error (down, or a certificate that does
// not parse) is evaluated from what it returned and, for the holders it
// did not list, from its last listing (Incomplete: the other sources'
// alerts clear as usual). While a source has not answered since the
// Sweeper's Run started (meshca started, or this replica took the Lease),
// nothing of the rule is cleared, as nothing tells what the source holds.
func (r *CAExpiry) Evaluate(ctx context.Context, now time.Time) ([]alert.Alert, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.listed == nil {
		r.listed = map[int][]inventory.Certificate{}
	}
	var out []alert.Alert
	var errs []error
	blind := false
	seen := map[alert.Key]bool{}
	for i, s := range r.Sources {
		certs, err := s.Certificates(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("inventory source %s: %w", s.Name(), err))
			if prev, ok := r.listed[i]; ok {
				certs = withLast(certs, prev)
				r.listed[i] = certs
			} else {
				// Not recorded either: what the answer lacks (a store
				// down, or a certificate that does not parse) is not known.
				blind = true
			}
		} else {
			r.listed[i] = certs
		}
		for _, c := range certs {
			if c.Kind == inventory.KindClusterTrustBundle || (r.Skip != nil && r.Skip(c)) {
				continue
			}
			sev, ok := r.Thresholds.Severity(c.Cert.NotBefore, c.Cert.NotAfter, now)
			if !ok {
				continue
			}
			a := alert.Alert{
				Rule: RuleCAExpiring, Object: ObjectOf(c), Severity: sev,
				Summary: expirySummary(c, now), Expires: c.Cert.NotAfter, Fingerprint: serial(c.Cert),
			}
			if seen[a.Key()] {
				continue // ca-cert.pem is also the head of cert-chain.pem
			}
			seen[a.Key()] = true
			if r.Action != nil {
				a.Action = r.Action(c, now)
			}
			if a.Action == "" {
				a.Action = DefaultAction(c)
			}
			out = append(out, a)
		}
	}
	switch {
	case len(errs) == 0:
		return out, nil
	case blind:
		return out, errors.Join(errs...)
	}
	return out, &Incomplete{Err: errors.Join(errs...)}
}

// ObjectOf names the object of c's alert: its kind and holder, and the
// serial where the holder has several certificates.
func ObjectOf(c inventory.Certificate) string {
	switch c.Kind {
	case inventory.KindRoot:
		return "root serial " + serial(c.Cert)
	case inventory.KindIntermediate:
		return "intermediate " + c.Name
	case inventory.KindCACerts:
		return "Secret " + c.Namespace + "/" + c.Name + " serial " + serial(c.Cert)
	case inventory.KindClusterTrustBundle:
		return "ClusterTrustBundle " + c.Name + " serial " + serial(c.Cert)
	}
	return c.Kind + " " + c.Namespace + "/" + c.Name + " serial " + serial(c.Cert)
}

// DefaultAction says what to do about c's expiry when the wiring knows
// nothing better.
func DefaultAction(c inventory.Certificate) string {
	switch c.Kind {
	case inventory.KindRoot:
		return "meshca cannot renew a root: start a root rotation (meshca rotate root) well before it expires, so that every workload trusts the new root before this one goes."
	case inventory.KindIntermediate:
		return "meshca rotates its intermediate itself when the root source can mint one; check meshca status and meshca's log."
	case inventory.KindCACerts:
		return "replace the cacerts files: put a new intermediate (ca-cert.pem, ca-key.pem, cert-chain.pem) into the Secret, then restart istiod."
	case inventory.KindClusterTrustBundle:
		return "publish the successor root in a ClusterTrustBundle, then remove this one once every workload trusts the successor."
	}
	return "replace the certificate before it expires."
}

func expirySummary(c inventory.Certificate, now time.Time) string {
	what := fmt.Sprintf("%s %q", kindText(c.Kind), c.Cert.Subject.CommonName)
	at := c.Cert.NotAfter.UTC().Format(time.RFC3339)
	if !now.Before(c.Cert.NotAfter) {
		return fmt.Sprintf("%s (serial %s) expired at %s.", what, serial(c.Cert), at)
	}
	left := c.Cert.NotAfter.Sub(now)
	life := c.Cert.NotAfter.Sub(c.Cert.NotBefore)
	return fmt.Sprintf("%s (serial %s) expires at %s: %s left, %d%% of its lifetime.",
		what, serial(c.Cert), at, days(left), int(100*float64(left)/float64(life)))
}

func kindText(kind string) string {
	switch kind {
	case inventory.KindRoot:
		return "meshca's root"
	case inventory.KindIntermediate:
		return "meshca's intermediate"
	case inventory.KindCACerts:
		return "the cacerts Secret's certificate"
	case inventory.KindClusterTrustBundle:
		return "the ClusterTrustBundle's root"
	}
	return "the certificate"
}

// days writes d in days and hours.
func days(d time.Duration) string {
	d = d.Round(time.Hour)
	if d < 24*time.Hour {
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	return fmt.Sprintf("%dd %dh", d/(24*time.Hour), d%(24*time.Hour)/time.Hour)
}

func serial(c *x509.Certificate) string { return hex.EncodeToString(c.SerialNumber.Bytes()) }

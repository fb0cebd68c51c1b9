package rules

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/meshca/meshca/crl"
	"github.com/meshca/meshca/rotation"
	"github.com/meshca/meshca/rotation/alert"
)

// Rule names of the health rules.
const (
	RuleCRLStale              = "CRLStale"
	RuleRootSourceUnreachable = "RootSourceUnreachable"
	RuleRotationStuck         = "RotationStuck"
	// RuleCACRLTooLarge: ca-crl.pem is over the size of a ConfigMap, so the
	// CRL manager does not hand it to the trust publisher (whose own
	// CRLTooLarge alert therefore never sees it).
	RuleCACRLTooLarge = "CACRLTooLarge"
)

// DefaultRootSourceUnhealthyAfter is how long the root source may fail its
// health check before RootSourceUnreachable fires.
const DefaultRootSourceUnhealthyAfter = 5 * time.Minute

// maxDetail bounds the text of an error quoted in an alert.
const maxDetail = 300

// CRLStale raises RuleCRLStale for every served CRL whose nextUpdate
// (RFC 5280 section 5.1.2.5) has passed.
type CRLStale struct {
	// CRLs returns the CRLs served (crl.Manager.CRLs).
	CRLs func() []crl.Published
}

// Names implements Rule.
func (r *CRLStale) Names() []string { return []string{RuleCRLStale} }

// Evaluate implements Rule.
func (r *CRLStale) Evaluate(_ context.Context, now time.Time) ([]alert.Alert, error) {
	var out []alert.Alert
	for _, p := range r.CRLs() {
		if p.NextUpdate.IsZero() || !now.After(p.NextUpdate) {
			continue
		}
		object, kind := "CRL "+p.Scope, "full"
		if p.Delta {
			object, kind = object+" delta", "delta"
		}
		action := "meshca rebuilds its CRLs every crl.republishInterval and retries failures; look for CRL build or publish errors in meshca's log."
		if crl.IsExternalScope(p.Scope) {
			action = "meshca takes the root's CRL from its source (Vault, crl.rootCRL) and refreshes it; renew the root's CRL there."
		}
		out = append(out, alert.Alert{
			Rule: RuleCRLStale, Object: object, Severity: alert.Critical,
			Summary: fmt.Sprintf("The %s CRL %s (number %d) has been past its nextUpdate since %s; relying parties that check revocation may reject meshca's certificates.",
				kind, p.Scope, p.Number, stamp(p.NextUpdate)),
			Action: action, Fingerprint: fmt.Sprintf("%d", p.Number),
		})
	}
	return out, nil
}

// RootSourceHealth raises RuleRootSourceUnreachable when the root source
// (root.Source.Health) has failed for After or longer, and likewise for
// the other root's source of a root rotation (Other).
type RootSourceHealth struct {
	// Kind names the source in the alert (root.Source.Kind).
	Kind   string
	Health func() error
	// Other, when set, is the health of the other root's source while a
	// root rotation between Vault roots publishes that root's CRL
	// (rootrotation.Source.OtherHealth; nil when there is none).
	Other func() error
	// After: default DefaultRootSourceUnhealthyAfter.
	After time.Duration

	mu sync.Mutex
	// when the failing run began, of Health and of Other; zero while
	// healthy
	since, otherSince time.Time
}

// Forget implements Forgetter: a new Lease term times outages afresh (an
// outage seen in an earlier term may have ended meanwhile).
func (r *RootSourceHealth) Forget() {
	r.mu.Lock()
	r.since, r.otherSince = time.Time{}, time.Time{}
	r.mu.Unlock()
}

// otherRootSourceObject is the object of the other root source's alert.
const otherRootSourceObject = "root source of the other root in force"

// Names implements Rule.
func (r *RootSourceHealth) Names() []string { return []string{RuleRootSourceUnreachable} }

// Evaluate implements Rule.
func (r *RootSourceHealth) Evaluate(_ context.Context, now time.Time) ([]alert.Alert, error) {
	err := r.Health()
	var otherErr error
	if r.Other != nil {
		otherErr = r.Other()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []alert.Alert
	if r.failingFor(err, &r.since, now) {
		out = append(out, alert.Alert{
			Rule: RuleRootSourceUnreachable, Object: "root source " + r.Kind, Severity: alert.Critical,
			Summary: fmt.Sprintf("The root source (%s) has failed its health check since %s: %s", r.Kind, stamp(r.since), clip(err.Error())),
			Action:  "meshca keeps signing with the intermediate it holds and retries; it cannot mint a new intermediate until the root source answers.",
			// One occurrence per outage.
			Fingerprint: stamp(r.since),
		})
	}
	if r.failingFor(otherErr, &r.otherSince, now) {
		out = append(out, alert.Alert{
			Rule: RuleRootSourceUnreachable, Object: otherRootSourceObject, Severity: alert.Critical,
			Summary: fmt.Sprintf("The source of the other root in force during the root rotation has failed its health check since %s: %s", stamp(r.otherSince), clip(otherErr.Error())),
			Action: "meshca publishes that root's CRL in ca-crl.pem while both roots are in force and cannot refresh it: the last one held stays until its nextUpdate (then CRLStale fires), and after a restart ca-crl.pem is held back until the source answers. " +
				"Restore the source; meshca rotate status shows the phase.",
			Fingerprint: stamp(r.otherSince),
		})
	}
	return out, nil
}

// failingFor tracks one source's failing run in *since and reports
// whether it has lasted After. Caller holds r.mu.
func (r *RootSourceHealth) failingFor(err error, since *time.Time, now time.Time) bool {
	if err == nil {
		*since = time.Time{}
		return false
	}
	if since.IsZero() {
		*since = now
	}
	after := r.After
	if after <= 0 {
		after = DefaultRootSourceUnhealthyAfter
	}
	return now.Sub(*since) >= after
}

// RotationStuck raises RuleRotationStuck for every rotating controller
// whose status says it is stuck.
type RotationStuck struct {
	Reporters []rotation.Reporter
}

// Names implements Rule.
func (r *RotationStuck) Names() []string { return []string{RuleRotationStuck} }

// Evaluate implements Rule.
func (r *RotationStuck) Evaluate(context.Context, time.Time) ([]alert.Alert, error) {
	var out []alert.Alert
	for _, rep := range r.Reporters {
		st := rep.RotationStatus()
		if !st.Stuck {
			continue
		}
		ca := st.CA
		if !rotation.KnownCA(ca) {
			ca = "unknown" // a controller's mistake never becomes a key
		}
		summary := fmt.Sprintf("The %s rotation is stuck in phase %s", ca, clip(st.Phase))
		if !st.Since.IsZero() {
			summary += " (since " + stamp(st.Since) + ")"
		}
		if st.Problem != "" {
			summary += ": " + clip(st.Problem)
		}
		out = append(out, alert.Alert{
			Rule: RuleRotationStuck, Object: "rotation " + ca, Severity: alert.Critical,
			Summary: summary, Action: "meshca retries with backoff; see meshca status for the phase and what it waits for.",
			Fingerprint: clip(st.Phase) + "@" + stamp(st.Since),
		})
	}
	return out, nil
}

// CRLTooLarge raises RuleCACRLTooLarge while ca-crl.pem is too large to
// publish.
type CRLTooLarge struct {
	// Oversize returns the size of the ca-crl.pem that was not published
	// (0 when the last one was) and the limit (crl.Manager.Oversize).
	Oversize func() (size, limit int)
}

// Names implements Rule.
func (r *CRLTooLarge) Names() []string { return []string{RuleCACRLTooLarge} }

// Evaluate implements Rule.
func (r *CRLTooLarge) Evaluate(context.Context, time.Time) ([]alert.Alert, error) {
	size, limit := r.Oversize()
	if size == 0 {
		return nil, nil
	}
	return []alert.Alert{{
		Rule: RuleCACRLTooLarge, Object: "ca-crl.pem", Severity: alert.Critical,
		Summary:     fmt.Sprintf("ca-crl.pem is %d bytes, over the %d-byte limit of the istio-ca-crl ConfigMap and the cacerts Secret; meshca keeps the last good one published.", size, limit),
		Action:      "meshca publishes the CRL again as soon as it fits. Shorten it: instead of revoking many leaves, rotate the intermediate and revoke its whole generation (one entry on the root's CRL); entries of expired certificates age out.",
		Fingerprint: fmt.Sprintf("%d", size),
	}}, nil
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// clip bounds s for an alert's text.
func clip(s string) string {
	if len(s) <= maxDetail {
		return s
	}
	return s[:maxDetail] + "…"
}

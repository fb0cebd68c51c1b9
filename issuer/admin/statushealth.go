package admin

import "time"

// Health classes of a certificate, a bundle or a CRL in Status. They use
// the thresholds of the MeshCACertificateExpiring and
// MeshCACertificateExpiryCritical alert rules (deploy/prometheus), so that
// meshca status and the alerts agree.
const (
	HealthOK       = "ok"
	HealthWarning  = "warning"
	HealthCritical = "critical"
	HealthExpired  = "expired"
	// HealthStale is a CRL past its nextUpdate (RFC 5280 section 5.1.2.5).
	HealthStale = "stale"
)

// Expiry thresholds, as in the alert rules: warning when less than
// WarnFraction of the certificate's lifetime or WarnWithin is left,
// critical when less than CriticalWithin is left, expired at notAfter.
const (
	WarnFraction   = 0.3
	WarnWithin     = 7 * 24 * time.Hour
	CriticalWithin = 3 * 24 * time.Hour
)

// CertHealth classifies a certificate valid from notBefore to notAfter
// (RFC 5280 section 4.1.2.5) at now.
func CertHealth(notBefore, notAfter, now time.Time) string {
	left := notAfter.Sub(now)
	switch {
	case left <= 0:
		return HealthExpired
	case left < CriticalWithin:
		return HealthCritical
	case left < WarnWithin, float64(left) < WarnFraction*float64(notAfter.Sub(notBefore)):
		return HealthWarning
	}
	return HealthOK
}

// CRLHealth classifies a CRL whose nextUpdate is next at now: stale once
// now is past it (a zero nextUpdate, which RFC 5280 allows issuers to
// omit, is never stale).
func CRLHealth(next, now time.Time) string {
	if !next.IsZero() && now.After(next) {
		return HealthStale
	}
	return HealthOK
}

// worse returns the more severe of two health classes.
func worse(a, b string) string {
	if rank(b) > rank(a) {
		return b
	}
	return a
}

func rank(h string) int {
	switch h {
	case HealthWarning:
		return 1
	case HealthCritical:
		return 2
	case HealthExpired, HealthStale:
		return 3
	}
	return 0
}

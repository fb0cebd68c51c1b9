// Package audit owns meshca's audit trail: one JSON line per decision
// (issued, denied, revoked, admin calls), with stable event names and
// fields. It is written through log/slog and never carries keys, CSRs,
// tokens or certificates.
//
// With a File (file.go) the same lines are also appended, through
// [File.Tee], to a tamper-evident file: a hash chain of JSON lines with
// checkpoints signed by the CA's intermediate, rotated by size and
// continued across restarts; [Verify] checks such a file end to end. The
// package signs with a key it is given (KeySource) and never opens the CA
// itself.
package audit

import (
	"context"
	"log/slog"

	"k8s.io/utils/clock"
)

// Stable event names.
const (
	EventIssued = "certificate.issued"
	EventDenied = "certificate.denied"
)

// Logger writes audit events.
type Logger struct {
	l *slog.Logger
	s *sampler
}

// New returns an audit Logger writing to l (nil means slog.Default()).
func New(l *slog.Logger) *Logger {
	if l == nil {
		l = slog.Default()
	}
	return (&Logger{l: l.With(slog.String(logKey, logValue))}).WithClock(clock.RealClock{})
}

// Decision is what the audit line records.
type Decision struct {
	// Identity is the authenticated SPIFFE ID (empty when authentication failed).
	Identity string
	// Requester describes the front door and the caller.
	Requester string
	Serial    string
	Profile   string
	// Generation is the CA generation that signed.
	Generation uint64
	NotAfter   string
	// Reason is the stable reason of a denial.
	Reason  string
	Message string
}

// Issued records an issuance.
func (a *Logger) Issued(ctx context.Context, d Decision) {
	a.l.LogAttrs(ctx, slog.LevelInfo, EventIssued,
		slog.String("event", EventIssued),
		slog.String("identity", d.Identity),
		slog.String("requester", d.Requester),
		slog.String("serial", d.Serial),
		slog.String("profile", d.Profile),
		slog.Uint64("generation", d.Generation),
		slog.String("not_after", d.NotAfter),
	)
}

// Denied records a refusal.
func (a *Logger) Denied(ctx context.Context, d Decision) {
	a.l.LogAttrs(ctx, slog.LevelWarn, EventDenied, deniedAttrs(d)...)
}

// deniedAttrs are the fields of a certificate.denied line; a sampled line
// appends "suppressed".
func deniedAttrs(d Decision, more ...slog.Attr) []slog.Attr {
	return append([]slog.Attr{
		slog.String("event", EventDenied),
		slog.String("identity", d.Identity),
		slog.String("requester", d.Requester),
		slog.String("profile", d.Profile),
		slog.String("reason", d.Reason),
		slog.String("message", d.Message),
	}, more...)
}

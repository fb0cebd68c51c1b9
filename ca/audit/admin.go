package audit

import (
	"context"
	"log/slog"
	"time"
)

// Event names of the admin endpoint.
const (
	// EventAdminCall is an admin call that was authorized, whatever its
	// outcome (the HTTP status says).
	EventAdminCall = "admin.call"
	// EventAdminDenied is an admin call refused before it ran: the caller
	// did not authenticate (401) or may not do the action (403).
	EventAdminDenied = "admin.denied"
	// EventRevoked is one certificate recorded as revoked.
	EventRevoked = "certificate.revoked"
	// EventRevocationRepeated is a request to revoke a certificate that
	// was revoked before: nothing changed, and the line carries the
	// original record (a retry after a lost answer finds it here).
	EventRevocationRepeated = "certificate.revocation_repeated"
)

// AdminCall is what an admin audit line records. Every field is meshca's
// own text (the registered route, the authenticated requester, a stable
// reason) except Message, which may quote caller input and is written as
// an escaped string field only.
type AdminCall struct {
	// Action is the verb and resource, e.g. "revoke revocations".
	Action string
	// Route is the registered route pattern, never the path sent.
	Route     string
	Requester string
	// Code is the HTTP status of the answer.
	Code    int
	Reason  string
	Message string
}

func adminAttrs(event string, c AdminCall) []slog.Attr {
	attrs := []slog.Attr{
		slog.String("event", event),
		slog.String("action", c.Action),
		slog.String("route", c.Route),
		slog.String("requester", c.Requester),
		slog.Int("code", c.Code),
	}
	if c.Reason != "" {
		attrs = append(attrs, slog.String("reason", c.Reason))
	}
	if c.Message != "" {
		attrs = append(attrs, slog.String("message", c.Message))
	}
	return attrs
}

// AdminCall records an authorized admin call and its outcome.
func (a *Logger) AdminCall(ctx context.Context, c AdminCall) {
	level := slog.LevelInfo
	if c.Code >= 400 {
		level = slog.LevelWarn
	}
	a.l.LogAttrs(ctx, level, EventAdminCall, adminAttrs(EventAdminCall, c)...)
}

// AdminDenied records an admin call refused to a caller that
// authenticated (a workload certificate that is not an admin's, a token
// RBAC refuses). Such a caller can repeat the call at no cost, so the lines
// are sampled per requester and reason like DeniedRepeatable.
func (a *Logger) AdminDenied(ctx context.Context, c AdminCall) {
	n, ok := a.s.allowCaller("admin:"+c.Requester, c.Reason)
	if !ok {
		return
	}
	a.l.LogAttrs(ctx, slog.LevelWarn, EventAdminDenied, append(adminAttrs(EventAdminDenied, c), slog.Uint64("suppressed", n))...)
}

// AdminDeniedUnauthenticated records an admin call of a caller that did
// not authenticate, sampled per reason like DeniedUnauthenticated.
func (a *Logger) AdminDeniedUnauthenticated(ctx context.Context, c AdminCall) {
	n, ok := a.s.allow("admin:" + c.Reason)
	if !ok {
		return
	}
	a.l.LogAttrs(ctx, slog.LevelWarn, EventAdminDenied, append(adminAttrs(EventAdminDenied, c), slog.Uint64("suppressed", n))...)
}

// Revocation is one revoked certificate for the audit trail.
type Revocation struct {
	Serial     string
	Kind       string
	Generation uint64
	Identity   string
	Known      bool
	Reason     string
	RevokedAt  time.Time
	// Requester is who asked now; RecordedBy is the requester stored in
	// the record (another one when the serial was revoked before: the
	// original record is kept).
	Requester  string
	RecordedBy string
}

// Revoked records a revocation.
func (a *Logger) Revoked(ctx context.Context, r Revocation) {
	a.l.LogAttrs(ctx, slog.LevelInfo, EventRevoked, revocationAttrs(EventRevoked, r)...)
}

// RevocationRepeated records a request to revoke what was revoked before:
// r is the original record, requested the reason asked for now.
func (a *Logger) RevocationRepeated(ctx context.Context, r Revocation, requested string) {
	a.l.LogAttrs(ctx, slog.LevelInfo, EventRevocationRepeated, append(revocationAttrs(EventRevocationRepeated, r), slog.String("requested_reason", requested))...)
}

func revocationAttrs(event string, r Revocation) []slog.Attr {
	return []slog.Attr{
		slog.String("event", event),
		slog.String("serial", r.Serial),
		slog.String("kind", r.Kind),
		slog.Uint64("generation", r.Generation),
		slog.String("identity", r.Identity),
		slog.Bool("known", r.Known),
		slog.String("reason", r.Reason),
		slog.String("revoked_at", r.RevokedAt.UTC().Format(time.RFC3339)),
		slog.String("requester", r.Requester),
		slog.String("recorded_by", r.RecordedBy),
	}
}

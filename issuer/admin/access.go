package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/meshca/meshca/ca/audit"
)

// APIGroup is the API group of the resources that a SubjectAccessReview
// names for an admin call over TCP with a Kubernetes token.
const APIGroup = "meshca.io"

// Action is what a route does, in Kubernetes authorization terms: the
// SubjectAccessReview verb and resource (in APIGroup) it needs.
type Action struct {
	Verb     string
	Resource string
}

// The actions of the admin routes.
var (
	ActRevoke          = Action{"revoke", "revocations"}
	ActListRevocations = Action{"list", "revocations"}
	ActListCRLs        = Action{"list", "crls"}
	ActGetCRL          = Action{"get", "crls"}
	ActGetStatus       = Action{"get", "status"}
	ActListRecords     = Action{"list", "records"}
	ActGetRecord       = Action{"get", "records"}
	// ActSign and ActGetCACerts are served on the local socket only.
	ActSign       = Action{"create", "certificates"}
	ActGetCACerts = Action{"get", "cacerts"}
)

func (a Action) String() string { return a.Verb + " " + a.Resource }

// denial is a refused call.
type denial struct {
	code int
	// reason is a stable word for the audit line.
	reason string
	msg    string
	// requester is set when the caller authenticated (403); empty for 401.
	requester string
}

// authorizer decides who calls and whether they may do a.
type authorizer interface {
	authorize(r *http.Request, a Action) (requester string, d *denial)
}

type requesterKey struct{}

// requesterOf is the authenticated caller of r, set by guard.
func requesterOf(r *http.Request) string {
	s, _ := r.Context().Value(requesterKey{}).(string)
	return s
}

// socketAuth admits meshca's own user (or root) when the kernel names the
// peer; the socket's mode already keeps everyone else out.
type socketAuth struct{ euid int }

func (s socketAuth) authorize(r *http.Request, _ Action) (string, *denial) {
	p, _ := r.Context().Value(peerKey{}).(peer)
	switch {
	case errors.Is(p.err, errPeerUnsupported):
	case p.err != nil:
		return "", &denial{code: http.StatusForbidden, reason: "peer_unknown", msg: "cannot identify the connecting user"}
	case p.uid != s.euid && p.uid != 0:
		return "", &denial{code: http.StatusForbidden, reason: "other_user", requester: fmt.Sprintf("cli:uid:%d", p.uid),
			msg: fmt.Sprintf("uid %d may not use this socket; run meshca as uid %d", p.uid, s.euid)}
	}
	return requester(p), nil
}

// guard authorizes a route's action, then runs it, and writes one audit
// line for every call: who, what, and the HTTP status. The route is the
// registered pattern, never the path the caller sent.
func guard(az authorizer, al *audit.Logger, act Action, next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who, d := az.authorize(r, act)
		if d != nil {
			call := audit.AdminCall{Action: act.String(), Route: r.Pattern, Requester: d.requester, Code: d.code, Reason: d.reason, Message: d.msg}
			if d.requester == "" {
				al.AdminDeniedUnauthenticated(r.Context(), call)
			} else {
				al.AdminDenied(r.Context(), call)
			}
			writeError(w, d.code, d.msg)
			return
		}
		// Authorized: the connection may be kept alive (closeUnlessAuthorized).
		w.Header().Del("Connection")
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		var msg string
		sw.onError = func(m string) { msg = m }
		defer func() {
			// A panic is logged and answered by recoverPanics; its audit
			// line says 500.
			if p := recover(); p != nil {
				if p != http.ErrAbortHandler {
					sw.code = http.StatusInternalServerError
				}
				al.AdminCall(r.Context(), audit.AdminCall{Action: act.String(), Route: r.Pattern, Requester: who, Code: sw.code, Message: "aborted"})
				panic(p)
			}
			al.AdminCall(r.Context(), audit.AdminCall{Action: act.String(), Route: r.Pattern, Requester: who, Code: sw.code, Message: msg})
		}()
		next(sw, r.WithContext(context.WithValue(r.Context(), requesterKey{}, who)))
	})
}

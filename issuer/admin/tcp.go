package admin

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/issuer/authn"
)

// RemoteOptions configure the admin TCP listener (server.adminListen).
type RemoteOptions struct {
	Options
	// Listen is the TCP address.
	Listen string
	// TLS is the server's TLS configuration (meshca's own serving
	// certificate; ClientAuth at least RequestClientCert). Its NextProtos
	// are replaced by http/1.1.
	TLS *tls.Config
	// ClientCert verifies admin client certificates: meshca-issued, known
	// to the store, not revoked (the front door's authenticator). An admin
	// certificate must moreover have been issued by 'meshca sign' (its
	// record's requester is "cli:…", Options.Records tells).
	ClientCert authn.Authenticator
	// Admins are the SPIFFE IDs whose client certificates may do every
	// admin action.
	Admins []string
	// Tokens authenticates Kubernetes bearer tokens (TokenReview); nil
	// refuses tokens.
	Tokens authn.Authenticator
	// Access authorizes a token's user (SubjectAccessReview); required
	// with Tokens.
	Access AccessReviewer
}

// AccessReviewer decides whether a Kubernetes user may do an action.
type AccessReviewer interface {
	// Allowed returns the apiserver's decision and its reason; an error
	// means it could not be asked.
	Allowed(ctx context.Context, caller *authn.Caller, act Action) (bool, string, error)
}

// ListenTCP binds the admin TCP listener; Serve then answers on it. The
// local-only sign route is not served there.
func ListenTCP(o RemoteOptions) (*Server, error) {
	o.defaults()
	if o.TLS == nil {
		return nil, errors.New("admin TCP listener needs a TLS configuration")
	}
	if o.Tokens != nil && o.Access == nil {
		return nil, errors.New("admin TCP listener: token authentication needs an access reviewer")
	}
	if o.ClientCert != nil && o.Records == nil {
		return nil, errors.New("admin TCP listener: client certificates need the issuance records (to tell admin certificates from workload ones)")
	}
	l, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin listener %s: %w", o.Listen, err)
	}
	cfg := o.TLS.Clone()
	cfg.NextProtos = []string{"http/1.1"}
	if cfg.ClientAuth == tls.NoClientCert {
		cfg.ClientAuth = tls.RequestClientCert
	}
	az := &remoteAuth{clientCert: o.ClientCert, records: o.Records, admins: map[string]bool{}, tokens: o.Tokens, access: o.Access, log: o.Log}
	for _, id := range o.Admins {
		az.admins[id] = true
	}
	h := o.handler()
	s := &Server{l: l, path: l.Addr().String(), tls: cfg, log: o.Log, done: make(chan struct{})}
	s.http = newHTTPServer(o.Log, instrument(o.Registerer, "tcp", recoverPanics(o.Log, h.routes(az, false))))
	return s, nil
}

// reviewTimeout bounds a SubjectAccessReview.
const reviewTimeout = 10 * time.Second

// remoteAuth authenticates a TCP caller by its client certificate (an
// admin SPIFFE ID) or its bearer token (TokenReview, then a
// SubjectAccessReview of the action in API group meshca.io).
type remoteAuth struct {
	clientCert authn.Authenticator
	records    Records
	admins     map[string]bool
	tokens     authn.Authenticator
	access     AccessReviewer
	log        *slog.Logger
}

func (a *remoteAuth) authorize(r *http.Request, act Action) (string, *denial) {
	creds := authn.Credentials{PeerAddr: peerAddr(r.RemoteAddr)}
	if r.TLS != nil {
		creds.PeerCertificates = r.TLS.PeerCertificates
	}
	if tok, ok := bearer(r); ok {
		creds.BearerToken = tok
	}
	switch {
	case len(creds.PeerCertificates) > 0:
		if a.clientCert == nil {
			return "", unauthenticated("client_certificate", "client certificates are not accepted here")
		}
		c, err := a.clientCert.Authenticate(r.Context(), authn.Credentials{PeerCertificates: creds.PeerCertificates, PeerAddr: creds.PeerAddr})
		if err != nil {
			return "", a.authnFailure(err)
		}
		who := "admin:" + c.Identity.String()
		if !a.admins[c.Identity.String()] {
			return "", &denial{code: http.StatusForbidden, reason: "not_an_admin", requester: who,
				msg: fmt.Sprintf("%s is not an admin identity of this meshca (server.adminIdentities)", c.Identity)}
		}
		if d := a.adminIssued(r.Context(), creds.PeerCertificates[0], c, who); d != nil {
			return "", d
		}
		return who, nil
	case creds.BearerToken != "":
		if a.tokens == nil {
			return "", unauthenticated("token", "Kubernetes tokens are not accepted here (meshca has no kubernetes configuration); use an admin client certificate")
		}
		c, err := a.tokens.Authenticate(r.Context(), creds)
		if err != nil {
			return "", a.authnFailure(err)
		}
		who := "k8s:" + c.User.Username
		ctx, cancel := context.WithTimeout(r.Context(), reviewTimeout)
		defer cancel()
		ok, why, err := a.access.Allowed(ctx, c, act)
		if err != nil {
			a.log.WarnContext(r.Context(), "admin: SubjectAccessReview failed", "err", err)
			return "", &denial{code: http.StatusServiceUnavailable, reason: "access_review_failed", requester: who,
				msg: "the Kubernetes apiserver could not be asked whether this user may " + act.String() + "; retry later"}
		}
		if !ok {
			msg := fmt.Sprintf("user %q may not %s %s.%s (Kubernetes RBAC)", c.User.Username, act.Verb, act.Resource, APIGroup)
			if why != "" {
				msg += ": " + why
			}
			return "", &denial{code: http.StatusForbidden, reason: "rbac_denied", requester: who, msg: msg}
		}
		return who, nil
	}
	return "", unauthenticated("no_credentials", "present an admin client certificate issued by this meshca, or a Kubernetes bearer token")
}

// adminRequesterPrefix starts the requester of every certificate that
// 'meshca sign' issued, on the admin socket or offline.
const adminRequesterPrefix = "cli:"

// adminIssued refuses an admin identity's certificate that meshca did not
// issue for admin use: one issued through a workload front door (the Istio
// port, to any pod running under that ServiceAccount, which would bypass
// the SubjectAccessReview that tokens go through), or meshca's own serving
// certificate. Only a certificate signed with 'meshca sign' — by someone
// who holds the admin socket or the store — is an admin certificate.
func (a *remoteAuth) adminIssued(ctx context.Context, leaf *x509.Certificate, c *authn.Caller, who string) *denial {
	rec, err := a.records.GetIssuance(ctx, hex.EncodeToString(leaf.SerialNumber.Bytes()))
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		a.log.WarnContext(ctx, "admin: reading the issuance record of a client certificate failed", "err", err)
		return &denial{code: http.StatusServiceUnavailable, reason: "records_unavailable", requester: who,
			msg: "the issuance record of the client certificate could not be read; retry later"}
	case strings.HasPrefix(rec.Requester, adminRequesterPrefix):
		return nil
	}
	return &denial{code: http.StatusForbidden, reason: "not_admin_issued", requester: who,
		msg: fmt.Sprintf("the client certificate of %s was not issued for admin use: mint admin certificates with 'meshca sign' (on the admin socket or offline with --dir), not through a workload front door", c.Identity)}
}

func unauthenticated(reason, msg string) *denial {
	return &denial{code: http.StatusUnauthorized, reason: reason, msg: msg}
}

func (a *remoteAuth) authnFailure(err error) *denial {
	if authn.IsUnavailable(err) {
		return &denial{code: http.StatusServiceUnavailable, reason: authn.ReasonOf(err), msg: err.Error()}
	}
	return unauthenticated(authn.ReasonOf(err), err.Error())
}

// bearer is the token of an "Authorization: Bearer" header.
func bearer(r *http.Request) (string, bool) {
	v := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

func peerAddr(hostport string) string {
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil {
		return ""
	}
	return ap.Addr().Unmap().String()
}

// SubjectAccessReviewer asks the apiserver with a SubjectAccessReview
// (authorization.k8s.io/v1) whether the token's user, with the groups,
// UID and extra its TokenReview returned, may do an action on a resource
// of API group meshca.io. meshca needs create on
// subjectaccessreviews.authorization.k8s.io (system:auth-delegator has it).
type SubjectAccessReviewer struct {
	Client kubernetes.Interface
}

// Allowed implements AccessReviewer.
func (s SubjectAccessReviewer) Allowed(ctx context.Context, c *authn.Caller, act Action) (bool, string, error) {
	if c.User == nil {
		return false, "", errors.New("the caller has no Kubernetes user")
	}
	extra := map[string]authorizationv1.ExtraValue{}
	for k, v := range c.User.Extra {
		extra[k] = authorizationv1.ExtraValue(v)
	}
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: c.User.Username, UID: c.User.UID, Groups: c.User.Groups, Extra: extra,
		ResourceAttributes: &authorizationv1.ResourceAttributes{Group: APIGroup, Resource: act.Resource, Verb: act.Verb},
	}}
	got, err := s.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
	if err != nil {
		return false, "", err
	}
	return got.Status.Allowed && !got.Status.Denied, got.Status.Reason, nil
}

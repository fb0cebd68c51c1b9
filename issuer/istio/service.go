// Package istio is meshca's main front door: istio.v1.auth.IstioCertificateService
// for istio-agent and ztunnel (Istio's security/v1alpha1 ca.proto). It authenticates every request
// before it looks at the CSR, resolves the named signer the CertSigner
// metadata selects (authentication.certSigners), applies ztunnel
// impersonation and rate limits, hands the authenticated identity to the
// signing engine and answers with
// Istio's chain order. It maps every outcome to the gRPC code Istio clients
// expect, and audits every refusal the engine does not see.
package istio

import (
	"context"
	"errors"
	"math"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	pb "istio.io/api/security/v1alpha1"

	"github.com/meshca/meshca/ca/audit"
	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/caerr"
	"github.com/meshca/meshca/issuer/authn"
	"github.com/meshca/meshca/issuer/impersonation"
	"github.com/meshca/meshca/issuer/ratelimit"
)

// Metadata keys istio-agent and ztunnel send in the request Struct.
const (
	MetaImpersonatedIdentity = "ImpersonatedIdentity"
	MetaCertSigner           = "CertSigner"
)

// Authenticator is what the service needs from the authenticator chain.
type Authenticator interface {
	Authenticate(ctx context.Context, creds authn.Credentials) (*authn.Caller, error)
}

// Impersonator decides whether caller may obtain a certificate for requested.
type Impersonator interface {
	Authorize(ctx context.Context, caller *authn.Caller, requested string) (*url.URL, error)
}

// Signer is the signing engine.
type Signer interface {
	Sign(ctx context.Context, req authority.Request) (*authority.Result, error)
}

// Options configure the Service.
type Options struct {
	Signer        Signer
	Authenticator Authenticator
	// Impersonator is nil when no node agent may impersonate.
	Impersonator Impersonator
	Limiter      *ratelimit.Limiter
	Audit        *audit.Logger
	Registerer   prometheus.Registerer
	// Unavailable reports whether an authentication error is a backend
	// outage (answered Unavailable, retried) rather than a bad credential.
	Unavailable func(error) bool
	// Clusters are the configured cluster IDs (the local one and every
	// remote). They are the only values of the metrics' cluster label
	// besides "unknown": the clusterid header is caller input and never
	// becomes a label itself.
	Clusters []string
	// CertSigners are the named signers a request may select with the
	// CertSigner metadata (authentication.certSigners). Without any,
	// CertSigner is ignored and every request gets the default signer.
	CertSigners []CertSigner
}

// Service implements IstioCertificateService.
type Service struct {
	pb.UnimplementedIstioCertificateServiceServer
	opts    Options
	metrics *metrics
	signers certSigners
}

// New returns the service; register it with Register.
func New(opts Options) *Service {
	if opts.Audit == nil {
		opts.Audit = audit.New(nil)
	}
	if opts.Limiter == nil {
		opts.Limiter = ratelimit.New(ratelimit.Options{})
	}
	signers := newCertSigners(opts.CertSigners)
	return &Service{opts: opts, metrics: newMetrics(opts.Registerer, opts.Clusters, signers != nil), signers: signers}
}

// Register adds the service to a gRPC server.
func (s *Service) Register(g *grpc.Server) { pb.RegisterIstioCertificateServiceServer(g, s) }

// opaque is the message for authentication failures: details go to the
// audit log, not to the caller.
const opaque = "request authenticate failure"

// CreateCertificate authenticates, authorises, rate-limits and signs.
func (s *Service) CreateCertificate(ctx context.Context, req *pb.IstioCertificateRequest) (*pb.IstioCertificateResponse, error) {
	start := time.Now()
	var out outcome
	resp, err := s.create(ctx, req, credentialsFrom(ctx), &out)
	s.metrics.observe(out.caller, err, time.Since(start))
	if out.signer != "" {
		s.metrics.signerObserve(out.signer, err)
	}
	return resp, err
}

// outcome is what create established, for the metrics: the authenticated
// caller (nil if none) and the signer label ("" when no CertSigner is
// configured or the request was not authenticated).
type outcome struct {
	caller *authn.Caller
	signer string
}

func (s *Service) create(ctx context.Context, req *pb.IstioCertificateRequest, creds authn.Credentials, out *outcome) (*pb.IstioCertificateResponse, error) {
	caller, err := s.opts.Authenticator.Authenticate(ctx, creds)
	if err != nil {
		reason := authn.ReasonOf(err)
		s.metrics.authFailed(reason)
		s.opts.Audit.DeniedUnauthenticated(ctx, audit.Decision{Requester: "istio", Reason: "authn_" + reason, Message: err.Error()})
		if s.opts.Unavailable != nil && s.opts.Unavailable(err) {
			return nil, status.Error(codes.Unavailable, "authentication backend unavailable, retry")
		}
		return nil, status.Error(codes.Unauthenticated, opaque)
	}
	out.caller = caller
	// The CertSigner is resolved before anything else reads the request:
	// an unknown one costs no pod lookup, no rate-limit token, no CSR parse.
	var signer *CertSigner
	if s.signers != nil {
		if signer, out.signer, err = s.selectSigner(ctx, req, caller); err != nil {
			return nil, err
		}
	}
	identity := caller.Identity
	idString := identity.String()
	requester := requesterOf(caller, idString)

	if imp := metaString(req, MetaImpersonatedIdentity); imp != "" {
		if s.opts.Impersonator == nil {
			return nil, s.deny(ctx, caller, codes.PermissionDenied, "impersonation_disabled", "impersonation is not enabled")
		}
		id, err := s.opts.Impersonator.Authorize(ctx, caller, imp)
		if err != nil {
			code := codes.PermissionDenied
			if errors.Is(err, impersonation.ErrNotReady) {
				code = codes.Unavailable
			}
			reason := "impersonation_" + impersonation.ReasonOf(err)
			return nil, s.deny(ctx, caller, code, reason, err.Error())
		}
		identity = id
		idString = id.String()
		requester += " for " + idString
	}

	if err := s.authorizeSigner(ctx, signer, caller, identity, idString); err != nil {
		return nil, err
	}

	if !s.opts.Limiter.Allow(idString) {
		return nil, s.deny(ctx, caller, codes.ResourceExhausted, "rate_limited", "rate limit for "+idString+" exceeded; retry later")
	}
	release, ok := s.opts.Limiter.Acquire(ctx)
	if !ok {
		return nil, s.deny(ctx, caller, codes.ResourceExhausted, "overloaded", "meshca is at its concurrency limit; retry later")
	}
	defer release()

	ttl := requestedTTL(req.GetValidityDuration())
	areq := authority.Request{CSR: []byte(req.GetCsr()), Identity: identity, TTL: ttl, Requester: requester}
	eng := s.opts.Signer
	if signer != nil {
		areq.Policy, areq.Profile = signer.Policy, signer.Profile
		areq.Requester += " signer:" + signer.Name
		if signer.Engine != nil {
			eng = signer.Engine
		}
	}
	res, err := eng.Sign(ctx, areq)
	if err != nil {
		// The engine audited the refusal already, with its cause.
		return nil, status.Error(caerr.CodeOf(err).GRPC(), callerMessage(err))
	}
	return &pb.IstioCertificateResponse{CertChain: res.Chain}, nil
}

// deny refuses an authenticated caller before the engine: by impersonation,
// CertSigner, or the rate and concurrency limits. The caller can repeat
// these at no cost, so their audit lines are sampled per caller and reason.
func (s *Service) deny(ctx context.Context, caller *authn.Caller, code codes.Code, reason, msg string) error {
	s.opts.Audit.DeniedRepeatable(ctx, audit.Decision{
		Identity: caller.Identity.String(), Requester: "istio:" + caller.String(), Reason: reason, Message: msg,
	})
	return status.Error(code, msg)
}

// requesterOf is "istio:" + caller.String() (authenticator:identity, then
// @cluster when known) built in one allocation; id is the caller's
// identity as a string.
func requesterOf(caller *authn.Caller, id string) string {
	var b strings.Builder
	b.Grow(len("istio:") + len(caller.Authenticator) + 1 + len(id) + 1 + len(caller.Cluster))
	b.WriteString("istio:")
	b.WriteString(caller.Authenticator)
	b.WriteByte(':')
	b.WriteString(id)
	if caller.Cluster != "" {
		b.WriteByte('@')
		b.WriteString(caller.Cluster)
	}
	return b.String()
}

func metaString(req *pb.IstioCertificateRequest, key string) string {
	if md := req.GetMetadata(); md != nil {
		if v, ok := md.GetFields()[key]; ok {
			return v.GetStringValue()
		}
	}
	return ""
}

// peerIP is the IP address of a peer, without its port ("" when unknown).
func peerIP(a net.Addr) string {
	if a == nil {
		return ""
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap().String()
	}
	return ""
}

// credentialsFrom extracts the TLS peer chain, the peer's IP address and
// the headers istio-agent sends.
func credentialsFrom(ctx context.Context) authn.Credentials {
	var c authn.Credentials
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			c.PeerCertificates = ti.State.PeerCertificates
		}
		c.PeerAddr = peerIP(p.Addr)
	}
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		if tok, ok := cutBearer(v); ok {
			c.BearerToken = tok
			break
		}
	}
	if v := md.Get("clusterid"); len(v) > 0 {
		c.ClusterID = v[0]
	}
	return c
}

func cutBearer(v string) (string, bool) {
	if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
		return strings.TrimSpace(v[7:]), true
	}
	return "", false
}

// requestedTTL converts validity_duration (seconds) to the TTL the engine
// checks. Zero and negative values mean the default, as in istiod
// (security/pkg/server/ca). Seconds beyond time.Duration's range saturate
// to its maximum instead of wrapping, so that the engine refuses them as
// over-long (ttl_too_long) like any other request above the maximum.
func requestedTTL(seconds int64) time.Duration {
	switch {
	case seconds <= 0:
		return 0
	case seconds > int64(math.MaxInt64/time.Second):
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(seconds) * time.Second
}

// callerMessage is what a caller is told about a refused signing: the
// whole error for a fault of the request, and only meshca's own message,
// without its cause, for a fault of meshca's side (Unavailable, Internal):
// the cause names store files, database names and addresses, which are for
// meshca's log, not for every workload that can call the endpoint.
func callerMessage(err error) string {
	var ce *caerr.Error
	if errors.As(err, &ce) && ce.Err != nil && (ce.Code == caerr.Unavailable || ce.Code == caerr.Internal) {
		return ce.Message
	}
	return err.Error()
}

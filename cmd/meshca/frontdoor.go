package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/credentials"
	"k8s.io/client-go/rest"

	"github.com/meshca/meshca/ca/audit"
	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/issuer/authn"
	"github.com/meshca/meshca/issuer/istio"
	"github.com/meshca/meshca/issuer/ratelimit"
	"github.com/meshca/meshca/issuer/tlsconfig"
)

// istioFrontDoor is the wired Istio CA endpoint.
type istioFrontDoor struct {
	service *istio.Service
	// tls is the TLS configuration of the gRPC port (meshca's own serving
	// certificate); the admin TCP listener serves with it too.
	tls *tls.Config
	// serving is the serving certificate behind tls; the rotation fan-out
	// reissues it on activation.
	serving *tlsconfig.ServingCert
	// creds are the gRPC port's transport credentials (tls).
	creds          credentials.TransportCredentials
	authenticators []string
}

// newIstioFrontDoor wires TLS, the authenticator chain, rate limits and the
// IstioCertificateService from cfg. revoked (nil: none) is asked on every
// request whether a client certificate is revoked: a revoked certificate
// neither authenticates nor renews.
func newIstioFrontDoor(ctx context.Context, cfg *config.Config, rt *authority.Runtime, lineages signerLineages, rc *rest.Config, revoked authn.RevocationChecker, log *slog.Logger, reg prometheus.Registerer) (*istioFrontDoor, error) {
	mode, err := tlsconfig.ParseMode(cfg.Server.Compliance)
	if err != nil {
		return nil, fmt.Errorf("server.compliance: %w", err)
	}
	var ips []net.IP
	for _, s := range cfg.Server.IPAddresses {
		ips = append(ips, net.ParseIP(s))
	}
	serving := &tlsconfig.ServingCert{
		Authority: rt.Authority, DNSNames: cfg.Server.DNSNames, IPs: ips, TTL: cfg.Server.ServingCertTTL.Duration,
		Log: log, Registerer: reg,
	}
	if err := serving.Start(ctx); err != nil { // renews in the background until ctx ends
		return nil, err
	}
	tlsCfg, err := tlsconfig.Server(mode, serving.GetCertificate)
	if err != nil {
		return nil, err
	}
	// istiod's order: client certificate, then JWT, then TokenReview.
	chain := authn.Chain{&authn.ClientCert{Trust: lineages.trust(rt.Authority), Records: rt.Store, TrustDomain: cfg.TrustDomain, Revocations: revoked,
		Untrusted: config.IsClusterLineage}}
	jwt, err := newJWT(cfg, log)
	if err != nil {
		return nil, err
	}
	if jwt != nil {
		chain = append(chain, jwt)
	}
	var imp istio.Impersonator
	// The clusters whose callers TokenReview authenticates: the only values
	// of the metrics' cluster label besides "unknown".
	var clusters []string
	if rc != nil || len(cfg.TokenReviewClusters()) > 0 {
		if rc != nil {
			clusters = append(clusters, cfg.Kubernetes.ClusterID)
		}
		for id := range cfg.TokenReviewClusters() {
			clusters = append(clusters, id)
		}
		ka, err := newKubeAuth(ctx, cfg, rc, log, reg)
		if err != nil {
			return nil, err
		}
		chain = append(chain, ka.authenticators...)
		if ka.impersonator != nil {
			imp = ka.impersonator
		}
	}
	names := []string{}
	for _, a := range chain {
		names = append(names, a.Name())
	}
	signers, err := istio.CertSignersFromConfig(cfg)
	if err != nil {
		return nil, err
	}
	lineages.engines(signers)
	rl := cfg.Server.RateLimit
	svc := istio.New(istio.Options{
		Signer:        rt.Authority,
		Authenticator: chain,
		Limiter: ratelimit.New(ratelimit.Options{
			PerIdentityQPS: rl.PerIdentityQPS, PerIdentityBurst: rl.PerIdentityBurst,
			MaxConcurrent: rl.MaxConcurrent, QueueTimeout: rl.QueueTimeout.Duration,
		}),
		Impersonator: imp,
		Audit:        audit.New(log),
		Registerer:   reg,
		Unavailable:  authn.IsUnavailable,
		Clusters:     clusters,
		CertSigners:  signers,
	})
	return &istioFrontDoor{
		service:        svc,
		tls:            tlsCfg,
		serving:        serving,
		creds:          credentials.NewTLS(tlsCfg),
		authenticators: names,
	}, nil
}

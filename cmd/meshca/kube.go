package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/issuer/authn"
	"github.com/meshca/meshca/issuer/impersonation"
)

// restConfig returns the local cluster's REST config, or nil without a cluster.
func restConfig(k config.KubernetesConfig) (*rest.Config, error) {
	var (
		cfg *rest.Config
		err error
	)
	switch {
	case k.InCluster:
		cfg, err = rest.InClusterConfig()
	case k.Kubeconfig != "":
		cfg, err = clientcmd.BuildConfigFromFlags("", k.Kubeconfig)
	default:
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes: %w", err)
	}
	authn.TuneRESTConfig(cfg)
	cfg.UserAgent = "meshca"
	return cfg, nil
}

// kubeAuth holds the cluster-facing authentication pieces.
type kubeAuth struct {
	authenticators []authn.Authenticator
	impersonator   *impersonation.Authorizer
}

// newKubeAuth builds TokenReview (every configured cluster) and, when node
// accounts are trusted, the impersonation authorizer. rc is nil when
// meshca runs outside any cluster and serves meshca-signs clusters only.
func newKubeAuth(ctx context.Context, cfg *config.Config, rc *rest.Config, log *slog.Logger, reg prometheus.Registerer) (*kubeAuth, error) {
	var local kubernetes.Interface
	if rc != nil {
		cs, err := kubernetes.NewForConfig(rc)
		if err != nil {
			return nil, err
		}
		local = cs
	}
	// The meshca-signs clusters and kubernetes.remoteClusters: one map.
	remotes, err := tokenReviewClients(ctx, cfg, local)
	if err != nil {
		return nil, err
	}
	clusters, err := authn.NewClusters(cfg.Kubernetes.ClusterID, local, remotes)
	if err != nil {
		return nil, err
	}
	tr, err := authn.NewTokenReviewer(authn.TokenReviewOptions{
		Clusters: clusters, TrustDomain: cfg.TrustDomain, Audiences: cfg.Authentication.TokenReview.Audiences,
		CacheTTL: cfg.Authentication.TokenReview.CacheTTL.Duration, Registerer: reg,
	})
	if err != nil {
		return nil, err
	}
	ka := &kubeAuth{authenticators: []authn.Authenticator{tr}}
	if accts := cfg.Authentication.Impersonation.TrustedNodeAccounts; len(accts) > 0 {
		imp, err := impersonation.New(impersonation.Options{
			TrustDomain: cfg.TrustDomain, TrustedNodeAccounts: accts, Clusters: clusters.Clients(),
			PodDeleted: tr.ForgetPod, // a deleted pod's cached token review ends with it
		})
		if err != nil {
			return nil, err
		}
		// Informers sync in the background; until then impersonation answers Unavailable.
		go func() {
			if err := imp.Start(ctx); err != nil && ctx.Err() == nil {
				log.Error("impersonation pod informers did not start", "error", err)
			}
		}()
		ka.impersonator = imp
	}
	return ka, nil
}

// newJWT builds the OIDC/JWKS authenticator when configured, and warns
// that the issuer's users may be able to choose their identity.
func newJWT(cfg *config.Config, log *slog.Logger) (authn.Authenticator, error) {
	j := cfg.Authentication.JWT
	if j == nil {
		return nil, nil
	}
	a, err := authn.NewJWT(authn.JWTOptions{
		Issuer: j.Issuer, Audiences: j.Audiences, JWKSURL: j.JWKSURL, JWKSFile: j.JWKSFile,
		TrustDomain: cfg.TrustDomain, IdentityTemplate: j.IdentityTemplate, AllowedNamespaces: j.AllowedNamespaces,
	})
	if err != nil {
		return nil, fmt.Errorf("authentication.jwt: %w", err)
	}
	log.Warn("authentication.jwt: " + a.Warning())
	return a, nil
}

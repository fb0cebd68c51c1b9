package main

import (
	"k8s.io/utils/clock"

	"github.com/meshca/meshca/issuer/certmanager"
	"github.com/meshca/meshca/issuer/kubesigner"
)

// certManagerOptions are the cert-manager external issuer's options
// (signers.certManager).
func certManagerOptions(d controllerDeps) certmanager.Options {
	return certmanager.Options{
		Engine:              d.rt.Authority,
		Check:               certmanager.EngineCheck(d.rt.Authority, clock.RealClock{}),
		TrustDomain:         d.cfg.TrustDomain,
		HealthCheckInterval: d.cfg.Signers.CertManager.HealthCheckInterval.Duration,
		Log:                 d.log.With("component", "certmanager"),
	}
}

// buildMeshIssuers is the controller that keeps the Ready condition of the
// MeshIssuers and MeshClusterIssuers (nil when signers.certManager is off).
func buildMeshIssuers(d controllerDeps) (kubesigner.Controller, error) {
	if !d.cfg.Signers.CertManager.Enabled {
		return nil, nil
	}
	return certmanager.NewIssuerController(certManagerOptions(d))
}

// buildCertificateRequests is the controller that signs cert-manager
// CertificateRequests for them (nil when signers.certManager is off).
func buildCertificateRequests(d controllerDeps) (kubesigner.Controller, error) {
	if !d.cfg.Signers.CertManager.Enabled {
		return nil, nil
	}
	return certmanager.NewRequestController(certManagerOptions(d))
}

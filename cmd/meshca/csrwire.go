package main

import (
	"github.com/meshca/meshca/ca/identity"
	"github.com/meshca/meshca/issuer/csrsigner"
	"github.com/meshca/meshca/issuer/kubesigner"
)

// csrController builds the CertificateSigningRequest signer (signers.csr).
func csrController(d controllerDeps) (kubesigner.Controller, error) {
	c := d.cfg.Signers.CSR
	if !c.Enabled {
		return nil, nil
	}
	td, err := identity.TrustDomain(d.cfg.TrustDomain)
	if err != nil {
		return nil, err
	}
	return csrsigner.New(csrsigner.Options{
		Engine:            d.rt.Authority,
		TrustDomain:       td,
		SignerNames:       c.SignerNames,
		AllowedRequesters: c.AllowedRequesters,
		MaxDuration:       c.MaxDuration.Duration,
		Profile:           c.Profile,
		Log:               d.log.With("component", "csr-signer"),
	})
}

package main

import (
	"github.com/meshca/meshca/issuer/kubesigner"
	"github.com/meshca/meshca/issuer/podcert"
)

// podCertController builds the PodCertificateRequest signer when
// signers.podCertificates is enabled.
func podCertController(d controllerDeps) (kubesigner.Controller, error) {
	pc := d.cfg.Signers.PodCertificates
	if !pc.Enabled {
		return nil, nil
	}
	c, err := podcert.New(podcert.Options{
		Engine:          d.rt.Authority,
		TrustDomain:     d.cfg.TrustDomain,
		SignerName:      pc.SignerName,
		MaxDuration:     pc.MaxDuration.Duration,
		Profile:         pc.Profile,
		UserAnnotations: pc.UserAnnotations,
		Log:             d.log.With("component", "podcertificate-signer"),
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

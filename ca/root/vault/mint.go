package vault

import (
	"context"
	"errors"
	"fmt"

	"github.com/meshca/meshca/ca/root"
)

// Kind implements root.Source: intermediates Vault signed are recorded
// with source "vault".
func (s *Source) Kind() string { return root.KindVault }

// Capabilities implements root.Source: Vault mints, and supplies the
// root's CRL (CurrentCRL).
func (s *Source) Capabilities() root.Capabilities {
	return root.Capabilities{Mint: true, RootCRL: true}
}

// MintIntermediate implements root.Source: Vault signs req.CSR
// (SignIntermediate) with the template's common name and lifetime. Only
// the CSR goes to Vault; the subject's key never does. The bundle's roots
// are Vault's, as last fetched.
func (s *Source) MintIntermediate(ctx context.Context, req root.IntermediateRequest) (*root.Bundle, error) {
	if len(req.CSR) == 0 {
		return nil, errors.New("vault sign-intermediate: the request carries no CSR: Vault signs intermediates for classical keys only (intermediate.profile classical)")
	}
	if len(req.AltPublicKeyInfo) > 0 {
		return nil, errors.New("vault sign-intermediate: Vault cannot sign a catalyst intermediate's ML-DSA key (2.5.29.72); use intermediate.profile classical")
	}
	if _, err := req.CheckCSR(); err != nil {
		return nil, fmt.Errorf("vault sign-intermediate: %w", err)
	}
	cert, chain, err := s.SignIntermediate(ctx, req.CSR, req.Template.CommonName, req.Template.Lifetime)
	if err != nil {
		return nil, err
	}
	inters, _ := root.SplitChain(chain)
	return &root.Bundle{Cert: cert, Intermediates: inters, Roots: s.CurrentRoots()}, nil
}

// Health implements root.Source: nil while Vault is up (its last call or
// health check succeeded, and its checks have completed), otherwise why
// it is not. Errors of an outage match ErrUnavailable.
func (s *Source) Health() error {
	if !s.validated.Load() {
		return s.notValidated("health")
	}
	if s.Up() {
		return nil
	}
	if p := s.lastErr.Load(); p != nil {
		return *p
	}
	return &UnavailableError{Op: "health", Err: errors.New("the last call to Vault failed")}
}

var _ root.Source = (*Source)(nil)

package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/crl"
	"github.com/meshca/meshca/issuer/admin"
	"github.com/meshca/meshca/trustbundle/cacerts"
)

// adminCACerts serves the public cacerts files of the running service's
// active generation over the admin socket (GET /v1/cacerts), with the
// reference of its key, never the key.
type adminCACerts struct {
	rt  *authority.Runtime
	crl *crl.Manager
}

func (a adminCACerts) CACerts(ctx context.Context, withCRL bool) (admin.CACerts, error) {
	m := a.rt.Authority.Material()
	gens, err := a.rt.Store.ListGenerations(ctx)
	if err != nil {
		return admin.CACerts{}, fmt.Errorf("read CA generations: %w", err)
	}
	keyRef := ""
	for _, g := range gens {
		if g.ID == m.Generation && bytes.Equal(g.CertDER, m.Bundle.Cert.Raw) {
			keyRef = g.KeyRef
		}
	}
	if keyRef == "" {
		return admin.CACerts{}, fmt.Errorf("the active CA generation %d is not in the store", m.Generation)
	}
	// A relative key file is relative to this process's working
	// directory, which the CLI does not share.
	if p, ok := keys.FilePath(keyRef); ok && !filepath.IsAbs(p) {
		if keyRef, err = filepath.Abs(p); err != nil {
			return admin.CACerts{}, err
		}
	}
	var caCRL []byte
	if withCRL && a.crl != nil {
		caCRL = a.crl.CACRLPEM()
	}
	out := admin.CACerts{Generation: m.Generation, KeyRef: keyRef, Files: map[string]string{}}
	for n, b := range cacerts.PublicFiles(m.Bundle, caCRL) {
		out.Files[n] = string(b)
	}
	return out, nil
}

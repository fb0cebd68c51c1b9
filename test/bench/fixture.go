package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"time"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/policy"
	"github.com/meshca/meshca/ca/profile"
)

// fixture is a real CA of one profile on disk (softkms keys, bbolt store,
// a root made for the profile) and a pool of pre-made CSRs shaped like
// ztunnel's (ECDSA P-256, one URI SAN).
type fixture struct {
	profile profile.Name
	dir     string
	rt      *authority.Runtime
	csrs    [][]byte
	ids     []*url.URL
	roots   *x509.CertPool
	inter   *x509.CertPool
}

const poolSize = 256

func newFixture(ctx context.Context, p profile.Name) (*fixture, error) {
	dir, err := os.MkdirTemp("", "meshca-bench-"+string(p)+"-")
	if err != nil {
		return nil, err
	}
	cfg := config.Defaults(dir)
	cfg.Intermediate.Profile, cfg.Intermediate.PQAlgorithm, cfg.Issuance.Profile = p, "", ""
	cfg.Init()
	rc, err := authority.CreateRoot(ctx, cfg, authority.RootRequest{
		CommonName: "bench root", Organization: "meshca", Lifetime: 24 * time.Hour * 365, KeyAlgorithm: keys.ECP256,
	})
	if err != nil {
		return nil, err
	}
	// Audit lines go nowhere: the benchmark measures the engine, not the terminal.
	rt, err := openCA(ctx, cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)), nil)
	if err != nil {
		return nil, err
	}
	fx := &fixture{profile: p, dir: dir, rt: rt, roots: x509.NewCertPool(), inter: x509.NewCertPool()}
	fx.roots.AddCert(rc)
	fx.inter.AddCert(rt.Authority.Material().Bundle.Cert)
	for i := 0; i < poolSize; i++ {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		id, _ := url.Parse(fmt.Sprintf("spiffe://cluster.local/ns/bench/sa/sa-%d", i))
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject: pkix.Name{Organization: []string{""}}, URIs: []*url.URL{id},
		}, key)
		if err != nil {
			return nil, err
		}
		fx.csrs = append(fx.csrs, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
		fx.ids = append(fx.ids, id)
	}
	return fx, nil
}

func (fx *fixture) close() {
	fx.rt.Close()
	os.RemoveAll(fx.dir)
}

// cryptoOnce is the floor of any CA: check the CSR, sign a leaf, verify it.
func (fx *fixture) cryptoOnce(_ context.Context, i int) error {
	m := fx.rt.Authority.Material()
	csr, err := policy.ParseCSR(fx.csrs[i%poolSize])
	if err != nil {
		return err
	}
	serial, err := policy.RandomSerial()
	if err != nil {
		return err
	}
	now := time.Now()
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: serial, NotBefore: now, NotAfter: now.Add(time.Hour),
		URIs: csr.URIs, KeyUsage: x509.KeyUsageDigitalSignature, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}, m.Bundle.Cert, csr.PublicKey, m.Signer)
	if err != nil {
		return err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	_, err = leaf.Verify(x509.VerifyOptions{Roots: fx.roots, Intermediates: fx.inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err
}

// engineOnce is the full path a front door calls, in the fixture's profile.
func (fx *fixture) engineOnce(ctx context.Context, i int) error {
	res, err := fx.rt.Authority.Sign(ctx, authority.Request{CSR: fx.csrs[i%poolSize], Identity: fx.ids[i%poolSize], Requester: "bench"})
	if err != nil {
		return err
	}
	if len(res.Chain) != 3 {
		return fmt.Errorf("chain has %d elements", len(res.Chain))
	}
	return nil
}

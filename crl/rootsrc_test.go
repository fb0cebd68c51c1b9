package crl_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/crl"
)

func TestFileRootCRL_ReadsChecksAndKeepsTheNewest(t *testing.T) {
	p := newMgrPKI(t)
	rootCRL := func(n int64, signer *mgrPKI) []byte {
		der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
			Number: big.NewInt(n), ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour),
		}, signer.root, signer.rootKey)
		require.NoError(t, err)
		return der
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "root.crl")
	src := &crl.FileRootCRL{File: f, Root: p.root, Refresh: time.Minute}
	ctx := context.Background()

	require.ErrorContains(t, src.Load(ctx), "crl.rootCRL.file: open")
	require.Nil(t, src.CurrentCRL())

	writeFile(t, dir, "root.crl", pemOf("X509 CRL", rootCRL(5, p)))
	require.NoError(t, src.Load(ctx))
	require.Equal(t, int64(5), src.CurrentCRL().Number.Int64())

	writeFile(t, dir, "root.crl", rootCRL(6, p)) // DER
	require.NoError(t, src.Load(ctx))
	require.Equal(t, int64(6), src.CurrentCRL().Number.Int64())

	writeFile(t, dir, "root.crl", rootCRL(4, p))
	require.ErrorContains(t, src.Load(ctx), "CRL number 4 is lower than the 6 held; keeping the newer one")
	require.Equal(t, int64(6), src.CurrentCRL().Number.Int64())

	// Issued by the intermediate, not the root.
	g := p.gens[p.active]
	writeFile(t, dir, "root.crl", rootCRL(9, &mgrPKI{root: g.cert, rootKey: g.key}))
	require.ErrorContains(t, src.Load(ctx), "is not issued by the root")
	// The root's name, another key: the signature must be the root's.
	writeFile(t, dir, "root.crl", rootCRL(9, newMgrPKI(t)))
	require.ErrorContains(t, src.Load(ctx), "is not signed by the root")
	writeFile(t, dir, "root.crl", pemOf("CERTIFICATE", p.root.Raw))
	require.ErrorContains(t, src.Load(ctx), `holds a "CERTIFICATE" PEM block, not an X509 CRL`)
	require.Equal(t, int64(6), src.CurrentCRL().Number.Int64(), "a failed read keeps the last good CRL")
}

func TestFileRootCRL_URLWithLimits(t *testing.T) {
	p := newMgrPKI(t)
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(3), ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour),
	}, p.root, p.rootKey)
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.HandleFunc("/root.crl", func(w http.ResponseWriter, _ *http.Request) { w.Write(der) })
	mux.HandleFunc("/huge.crl", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte(strings.Repeat("a", 16<<20+1)))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	ctx := context.Background()

	src := &crl.FileRootCRL{URL: srv.URL + "/root.crl", Root: p.root, Refresh: time.Minute}
	require.NoError(t, src.Load(ctx))
	require.Equal(t, der, src.CurrentCRL().Raw)

	src = &crl.FileRootCRL{URL: srv.URL + "/missing.crl", Root: p.root, Refresh: time.Minute}
	require.ErrorContains(t, src.Load(ctx), "answered 404 Not Found")
	src = &crl.FileRootCRL{URL: srv.URL + "/huge.crl", Root: p.root, Refresh: time.Minute}
	require.ErrorContains(t, src.Load(ctx), "is over 16777216 bytes")
}

// A root CRL that would mislead relying parties or that they would refuse
// is not taken in place of the one held: a delta CRL (it lists only what
// changed since its base, and a relying party handed it as the root's CRL
// takes it as complete: openssl accepts a chain through an intermediate
// that the base CRL revokes), one dated ahead of the clock, and one past
// its nextUpdate while the one held is not. An expired CRL is taken when
// nothing fresher is held (a newer number lists more).
func TestFileRootCRL_RefusesWhatMisleadsRelyingParties(t *testing.T) {
	p := newMgrPKI(t)
	now := p.clk.Now()
	inter := p.gens[p.active].cert
	rootCRL := func(n int64, thisUpdate, nextUpdate time.Time, delta bool) []byte {
		tmpl := &x509.RevocationList{Number: big.NewInt(n), ThisUpdate: thisUpdate, NextUpdate: nextUpdate}
		if delta {
			base, err := asn1.Marshal(big.NewInt(n - 1))
			require.NoError(t, err)
			tmpl.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 27}, Critical: true, Value: base}}
		} else {
			tmpl.RevokedCertificateEntries = []x509.RevocationListEntry{{SerialNumber: inter.SerialNumber, RevocationTime: now.Add(-time.Minute)}}
		}
		der, err := x509.CreateRevocationList(rand.Reader, tmpl, p.root, p.rootKey)
		require.NoError(t, err)
		return der
	}
	// What openssl verify -crl_check_all makes of a ca-crl.pem whose root
	// CRL is each of these (all but the delta revoke the intermediate),
	// beside a good CRL of the intermediate.
	leaf, _ := p.issue(t, p.active, appID, now.Add(time.Hour))
	interDER, err := crl.Build(crl.Params{Issuer: inter, Number: 1, ThisUpdate: now, NextUpdate: now.Add(time.Hour)},
		func(func(crl.Entry) bool) error { return nil }, crl.Signer{Key: p.gens[p.active].key})
	require.NoError(t, err)
	vdir := t.TempDir()
	openssl := func(rootDER []byte) string {
		f := writeFile(t, vdir, "ca-crl.pem", append(pemOf("X509 CRL", interDER), pemOf("X509 CRL", rootDER)...))
		out, _ := opensslVerify(t, &mgrEnv{mgrPKI: p}, vdir, p.root, inter, leaf, f, "-crl_check_all")
		return out
	}
	require.Contains(t, openssl(rootCRL(2, now, now.Add(time.Hour), false)), "certificate revoked", "the base CRL revokes the intermediate")
	require.Contains(t, openssl(rootCRL(3, now, now.Add(time.Hour), true)), ": OK", "the delta alone hides it")
	require.Contains(t, openssl(rootCRL(2, now.Add(-2*time.Hour), now.Add(-time.Hour), false)), "CRL has expired")
	require.Contains(t, openssl(rootCRL(2, now.Add(time.Hour), now.Add(2*time.Hour), false)), "CRL is not yet valid")

	dir := t.TempDir()
	src := &crl.FileRootCRL{File: filepath.Join(dir, "root.crl"), Root: p.root, Refresh: time.Minute, Clock: p.clk}
	ctx := context.Background()
	writeFile(t, dir, "root.crl", rootCRL(3, now.Add(-2*time.Hour), now.Add(-time.Hour), false))
	require.NoError(t, src.Load(ctx), "expired, and nothing fresher held: taken (and logged)")
	require.Equal(t, int64(3), src.CurrentCRL().Number.Int64())
	writeFile(t, dir, "root.crl", rootCRL(5, now, now.Add(time.Hour), false))
	require.NoError(t, src.Load(ctx))

	writeFile(t, dir, "root.crl", rootCRL(6, now, now.Add(time.Hour), true))
	require.ErrorContains(t, src.Load(ctx), "is a delta CRL (RFC 5280 section 5.2.4); ca-crl.pem needs the root's complete CRL")
	writeFile(t, dir, "root.crl", rootCRL(6, now.Add(time.Hour), now.Add(2*time.Hour), false))
	require.ErrorContains(t, src.Load(ctx), "more than 5m0s ahead of this host's clock")
	writeFile(t, dir, "root.crl", rootCRL(6, now.Add(4*time.Minute), now.Add(2*time.Hour), false))
	require.NoError(t, src.Load(ctx), "within the clock skew allowed")
	require.Equal(t, int64(6), src.CurrentCRL().Number.Int64())
	writeFile(t, dir, "root.crl", rootCRL(7, now.Add(-2*time.Hour), now.Add(-time.Hour), false))
	require.ErrorContains(t, src.Load(ctx), "the CRL is past its nextUpdate")
	require.Equal(t, int64(6), src.CurrentCRL().Number.Int64(), "the one held is still valid")
	p.clk.Step(3 * time.Hour) // both expired now: the newer is taken
	require.NoError(t, src.Load(ctx))
	require.Equal(t, int64(7), src.CurrentCRL().Number.Int64())
}

package crl_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
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

package crl_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store/boltstore"
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
	require.ErrorContains(t, src.Load(ctx), "the CRL is not issued by CN=Manager Test Root,O=meshca (it names another issuer)")
	// The root's name, another key: its key identifier and signature
	// must be the root's.
	other := newMgrPKI(t)
	writeFile(t, dir, "root.crl", rootCRL(9, other))
	require.ErrorContains(t, src.Load(ctx), "the CRL names another key of CN=Manager Test Root,O=meshca")
	src.Root = &x509.Certificate{Raw: p.root.Raw, RawSubject: p.root.RawSubject, Subject: p.root.Subject, PublicKey: p.root.PublicKey,
		PublicKeyAlgorithm: p.root.PublicKeyAlgorithm} // without a subject key identifier
	require.ErrorContains(t, src.Load(ctx), "the CRL is not signed by CN=Manager Test Root,O=meshca")
	src.Root = p.root
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

// A root CRL that would mislead relying parties, or that they would
// refuse, is not taken in place of the one held. openssl verify
// -crl_check_all shows what each would do in ca-crl.pem (the root's CRL
// revokes the intermediate unless said otherwise): a delta CRL is taken
// as complete and hides the base's revocations, an entry naming another
// issuer (certificateIssuer) makes OpenSSL skip that entry and the ones
// after it, and an expired or not yet valid CRL fails every chain.
func TestFileRootCRL_RefusesWhatMisleadsRelyingParties(t *testing.T) {
	p := newMgrPKI(t)
	now := p.clk.Now()
	inter := p.gens[p.active].cert
	type opt func(*x509.RevocationList)
	delta := func(l *x509.RevocationList) {
		base, err := asn1.Marshal(new(big.Int).Sub(l.Number, big.NewInt(1)))
		require.NoError(t, err)
		l.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 27}, Critical: true, Value: base}}
		l.RevokedCertificateEntries = nil
	}
	otherIssuerFirst := func(l *x509.RevocationList) {
		name, err := asn1.Marshal([]asn1.RawValue{{Tag: 4, Class: asn1.ClassContextSpecific, IsCompound: true, Bytes: p.gens[p.retired()].cert.RawSubject}})
		require.NoError(t, err)
		l.RevokedCertificateEntries = append([]x509.RevocationListEntry{{SerialNumber: big.NewInt(77), RevocationTime: now.Add(-time.Hour),
			ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 29}, Critical: false, Value: name}}}}, l.RevokedCertificateEntries...)
	}
	rootCRL := func(n int64, thisUpdate, nextUpdate time.Time, opts ...opt) []byte {
		tmpl := &x509.RevocationList{Number: big.NewInt(n), ThisUpdate: thisUpdate, NextUpdate: nextUpdate,
			RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: inter.SerialNumber, RevocationTime: now.Add(-time.Minute)}}}
		for _, o := range opts {
			o(tmpl)
		}
		der, err := x509.CreateRevocationList(rand.Reader, tmpl, p.root, p.rootKey)
		require.NoError(t, err)
		return der
	}
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
	require.Contains(t, openssl(rootCRL(2, now, now.Add(time.Hour))), "certificate revoked", "the complete CRL revokes the intermediate")
	require.Contains(t, openssl(rootCRL(3, now, now.Add(time.Hour), delta)), ": OK", "the delta alone hides it")
	require.Contains(t, openssl(rootCRL(3, now, now.Add(time.Hour), otherIssuerFirst)), ": OK", "an entry of another issuer before it hides it")
	require.Contains(t, openssl(rootCRL(2, now.Add(-2*time.Hour), now.Add(-time.Hour))), "CRL has expired")
	require.Contains(t, openssl(rootCRL(2, now.Add(30*time.Second), now.Add(2*time.Hour))), "CRL is not yet valid")

	dir := t.TempDir()
	src := &crl.FileRootCRL{File: filepath.Join(dir, "root.crl"), Root: p.root, Refresh: time.Minute, Clock: p.clk}
	ctx := context.Background()
	load := func(der []byte) error {
		writeFile(t, dir, "root.crl", der)
		return src.Load(ctx)
	}
	require.NoError(t, load(rootCRL(3, now.Add(-4*time.Hour), now.Add(-time.Hour))), "expired, and nothing else held: taken (and logged)")
	require.NoError(t, load(rootCRL(5, now.Add(-3*time.Hour), now.Add(time.Hour))))
	require.ErrorContains(t, load(rootCRL(6, now, now.Add(time.Hour), delta)), "the CRL is a delta CRL (RFC 5280 section 5.2.4)")
	require.ErrorContains(t, load(rootCRL(6, now, now.Add(time.Hour), otherIssuerFirst)), "the CRL lists serial 4d of another issuer (certificateIssuer, RFC 5280 section 5.3.3)")
	require.ErrorContains(t, load(rootCRL(6, now.Add(time.Hour), now.Add(2*time.Hour))), "more than 5m0s ahead of this host's clock")
	require.ErrorContains(t, load(rootCRL(6, now.Add(30*time.Second), now.Add(2*time.Hour))), "is not valid now and the one held is; keeping the one held")
	require.ErrorContains(t, load(rootCRL(5, now.Add(-2*time.Hour), now.Add(-time.Hour))), "is not valid now and the one held is", "an expired copy of the number held")
	require.ErrorContains(t, load(rootCRL(6, now.Add(-210*time.Minute), now.Add(30*24*time.Hour))), "before the one held (number 5, ", "a greater number issued before the one held: a replay")
	require.Equal(t, int64(5), src.CurrentCRL().Number.Int64(), "a refused read keeps the CRL held")
	require.NoError(t, load(rootCRL(6, now.Add(-2*time.Hour), now.Add(-time.Hour))), "expired, but a greater number lists more: taken (fails closed)")
	require.Equal(t, int64(6), src.CurrentCRL().Number.Int64())
	p.clk.Step(time.Minute)
	require.NoError(t, load(rootCRL(7, now.Add(30*time.Second), now.Add(2*time.Hour))), "valid now")
	require.Equal(t, int64(7), src.CurrentCRL().Number.Int64())
}

// TestFileRootCRL_TheCRLKeptInTheStoreOutlivesARestart: with a Memory, the
// CRL taken is kept in meshca's store. A restarted source (or another
// replica) publishes it while its file cannot be read, never takes an
// older one after it, and follows a greater one another replica took; once
// the CRL kept has expired, a valid lower-numbered one replaces it.
func TestFileRootCRL_TheCRLKeptInTheStoreOutlivesARestart(t *testing.T) {
	p := newMgrPKI(t)
	now := time.Now()
	issued := func(n int64, thisUpdate, nextUpdate time.Time) []byte {
		der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
			Number: big.NewInt(n), ThisUpdate: thisUpdate, NextUpdate: nextUpdate,
		}, p.root, p.rootKey)
		require.NoError(t, err)
		return der
	}
	rootCRL := func(n int64, nextUpdate time.Time) []byte { return issued(n, now.Add(-time.Minute), nextUpdate) }
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "meshca.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	mem := root.NewCRLMemory(st)
	require.NotNil(t, mem)
	dir := t.TempDir()
	f := filepath.Join(dir, "root.crl")
	ctx := context.Background()
	newSrc := func(clk clock.WithTicker) *crl.FileRootCRL {
		return &crl.FileRootCRL{File: f, Root: p.root, Refresh: time.Minute, Memory: mem, Clock: clk, Log: slog.New(slog.DiscardHandler)}
	}

	first := newSrc(nil)
	writeFile(t, dir, "root.crl", rootCRL(6, now.Add(time.Hour)))
	require.NoError(t, first.Load(ctx))

	// Restarted with the file gone: the CRL kept is published.
	require.NoError(t, os.Remove(f))
	restarted := newSrc(nil)
	require.ErrorContains(t, restarted.Load(ctx), "crl.rootCRL.file: open")
	require.NotNil(t, restarted.CurrentCRL())
	require.Equal(t, int64(6), restarted.CurrentCRL().Number.Int64())

	// A replayed older CRL is not taken after the restart.
	writeFile(t, dir, "root.crl", rootCRL(4, now.Add(time.Hour)))
	require.ErrorContains(t, newSrc(nil).Load(ctx), "CRL number 4 is lower than the 6 held; keeping the newer one")

	// Another replica takes CRL 8; this one, served 7, holds 8.
	writeFile(t, dir, "root.crl", rootCRL(8, now.Add(time.Hour)))
	require.NoError(t, first.Load(ctx))
	writeFile(t, dir, "root.crl", rootCRL(7, now.Add(time.Hour)))
	require.ErrorContains(t, restarted.Load(ctx), "CRL number 7 is lower than the 8 held; keeping the newer one")
	require.Equal(t, int64(8), restarted.CurrentCRL().Number.Int64())

	// Once CRL 8 has expired, a replayed CRL 5 issued before it is still
	// refused, even valid for longer.
	later := clocktesting.NewFakeClock(now.Add(2 * time.Hour))
	writeFile(t, dir, "root.crl", issued(5, now.Add(-10*time.Minute), now.Add(30*24*time.Hour)))
	fresh := newSrc(later)
	require.ErrorContains(t, fresh.Load(ctx), "CRL number 5 is lower than the 8 held; keeping the newer one")
	require.Equal(t, int64(8), fresh.CurrentCRL().Number.Int64(), "the expired CRL kept is held, as before the restart")
	// The CA's numbering went back: a valid CRL 2 issued after CRL 8 is
	// taken, and kept in the store in CRL 8's place.
	writeFile(t, dir, "root.crl", issued(2, now.Add(90*time.Minute), now.Add(3*time.Hour)))
	require.NoError(t, fresh.Load(ctx))
	require.Equal(t, int64(2), fresh.CurrentCRL().Number.Int64())
	// A running source that holds the expired CRL 8 and cannot read its
	// file follows the store, and a replayed CRL 5 does not replace
	// CRL 2 there.
	require.NoError(t, os.Remove(f))
	restarted.Clock = later
	require.ErrorContains(t, restarted.Load(ctx), "crl.rootCRL.file: open")
	require.Equal(t, int64(2), restarted.CurrentCRL().Number.Int64(), "the running source follows too")
	writeFile(t, dir, "root.crl", issued(1, now.Add(100*time.Minute), now.Add(3*time.Hour)))
	require.ErrorContains(t, newSrc(later).Load(ctx), "CRL number 1 is lower than the 2 held; keeping the newer one")
}

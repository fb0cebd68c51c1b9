package crl

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"net/http"
	"strings"
	"time"
)

// Content types of the distribution point: RFC 5280 section 4.2.1.13 (a
// DER CRL over HTTP is application/pkix-crl, RFC 2585 section 4.2) and PEM
// text (RFC 7468).
const (
	ContentTypeDER = "application/pkix-crl"
	ContentTypePEM = "application/x-pem-file"
)

// CACRLName is the HTTP name of the ca-crl.pem meshca publishes.
const CACRLName = "ca-crl.pem"

// servedFile is one response of the distribution point.
type servedFile struct {
	body        []byte
	contentType string
	etag        string
}

// servedSet is what the distribution point serves, swapped atomically.
type servedSet struct {
	byName map[string]*servedFile
	list   []Published
	caCRL  []byte
}

// newServedSet is what to serve from list and caCRL. Nothing is sent
// with Last-Modified: a client revalidating with If-Modified-Since alone
// would get 304 for new bytes whose date is not later than the one it
// holds (RFC 9110 section 13.1.3), which happens to ca-crl.pem when one of
// its CRLs is rebuilt within the second of another or one is dropped, to
// any CRL after the clock was stepped back (meshca dates CRLs by the clock
// rather than wait for it), and between replicas, each of which builds and
// dates its own CRLs. The strong ETag makes revalidation as cheap.
func newServedSet(list []Published, caCRL []byte) *servedSet {
	s := &servedSet{byName: map[string]*servedFile{}, list: list, caCRL: caCRL}
	for _, p := range list {
		name := p.Scope
		if p.Delta {
			name += "-delta"
		}
		s.byName[name+".crl"] = newServedFile(p.DER, ContentTypeDER)
		s.byName[name+".pem"] = newServedFile(pem.EncodeToMemory(&pem.Block{Type: pemTypeCRL, Bytes: p.DER}), ContentTypePEM)
	}
	if len(caCRL) > 0 {
		s.byName[CACRLName] = newServedFile(caCRL, ContentTypePEM)
	}
	return s
}

// newServedFile: the ETag is strong (RFC 9110 section 8.8.3), a digest of
// the exact bytes (for the PEM forms, of the PEM text).
func newServedFile(body []byte, ct string) *servedFile {
	sum := sha256.Sum256(body)
	return &servedFile{body: body, contentType: ct, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}
}

// Handler is the HTTP distribution point, mounted at /crl/ on the
// operations listener:
//
//	GET /crl/<scope>.crl        full CRL, DER (application/pkix-crl)
//	GET /crl/<scope>-delta.crl  delta CRL, DER
//	GET /crl/<scope>.pem        full CRL, PEM (also <scope>-delta.pem)
//	GET /crl/ca-crl.pem         exactly the ca-crl.pem meshca published
//
// Responses carry a strong ETag, and no Last-Modified (see newServedSet),
// and answer If-None-Match with 304 (RFC 9110 section 13). An unknown name
// is a fixed 404 that does not echo the request.
func (m *Manager) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, ok := strings.CutPrefix(r.URL.Path, "/crl/")
		f := m.served.Load().byName[name]
		if !ok || f == nil {
			http.Error(w, "no such CRL", http.StatusNotFound)
			return
		}
		h := w.Header()
		h.Set("Content-Type", f.contentType)
		h.Set("ETag", f.etag)
		// Revalidate every time: a revocation replaces the CRL long before
		// its nextUpdate, and the ETag makes revalidation cheap.
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
	})
}

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
	modTime     time.Time // zero: no Last-Modified
	// floor is the latest Last-Modified served under the file's name.
	floor time.Time
}

// servedSet is what the distribution point serves, swapped atomically.
type servedSet struct {
	byName map[string]*servedFile
	list   []Published
	caCRL  []byte
}

// newServedSet is what to serve from list and caCRL, after prev (nil:
// nothing served yet). A file's Last-Modified is its CRL's thisUpdate
// (for ca-crl.pem, the newest of them), sent only when it is later than
// every one served before under that name: a client revalidating with
// If-Modified-Since alone would otherwise get 304 for new bytes and keep
// the old CRL (RFC 9110 section 13.1.3). That would happen to ca-crl.pem
// when one of its CRLs is rebuilt within the second of another, or one is
// dropped, and to any CRL after the clock was stepped back. Such a file
// is served without Last-Modified (and If-Modified-Since is ignored for
// it); its ETag still makes revalidation cheap. A date is never moved
// ahead of the CRL's, which would put it past the response's Date.
func newServedSet(prev *servedSet, list []Published, caCRL []byte) *servedSet {
	s := &servedSet{byName: map[string]*servedFile{}, list: list, caCRL: caCRL}
	add := func(name string, body []byte, ct string, mod time.Time) {
		f := newServedFile(body, ct, mod)
		var floor time.Time
		if prev != nil {
			if old := prev.byName[name]; old != nil {
				if old.etag == f.etag {
					s.byName[name] = old
					return
				}
				floor = old.floor
			}
		}
		if f.modTime.After(floor) {
			f.floor = f.modTime
		} else {
			f.modTime, f.floor = time.Time{}, floor
		}
		s.byName[name] = f
	}
	for _, p := range list {
		name := p.Scope
		if p.Delta {
			name += "-delta"
		}
		add(name+".crl", p.DER, ContentTypeDER, p.ThisUpdate)
		add(name+".pem", pem.EncodeToMemory(&pem.Block{Type: pemTypeCRL, Bytes: p.DER}), ContentTypePEM, p.ThisUpdate)
	}
	if len(caCRL) > 0 {
		var newest time.Time
		for _, p := range list {
			if p.ThisUpdate.After(newest) {
				newest = p.ThisUpdate
			}
		}
		add(CACRLName, caCRL, ContentTypePEM, newest)
	}
	return s
}

// newServedFile: the ETag is strong (RFC 9110 section 8.8.3), a digest of
// the exact bytes (for the PEM forms, of the PEM text).
func newServedFile(body []byte, ct string, mod time.Time) *servedFile {
	sum := sha256.Sum256(body)
	return &servedFile{body: body, contentType: ct, etag: `"` + hex.EncodeToString(sum[:16]) + `"`, modTime: mod}
}

// Handler is the HTTP distribution point, mounted at /crl/ on the
// operations listener:
//
//	GET /crl/<scope>.crl        full CRL, DER (application/pkix-crl)
//	GET /crl/<scope>-delta.crl  delta CRL, DER
//	GET /crl/<scope>.pem        full CRL, PEM (also <scope>-delta.pem)
//	GET /crl/ca-crl.pem         exactly the ca-crl.pem meshca published
//
// Responses carry a strong ETag and Last-Modified (the CRL's thisUpdate,
// when later than any served before; see newServedSet) and answer
// If-None-Match / If-Modified-Since with 304 (RFC 9110 section 13). An
// unknown name is a fixed 404 that does not echo the request.
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
		http.ServeContent(w, r, "", f.modTime, bytes.NewReader(f.body))
	})
}

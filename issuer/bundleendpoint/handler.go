package bundleendpoint

import (
	"bytes"
	"fmt"
	"net/http"
	"runtime/debug"
	"time"
)

// ContentType of a SPIFFE bundle (a JWK Set, RFC 7517 section 8.5 names
// application/jwk-set+json; go-spiffe, SPIRE and Istio read any type).
const ContentType = "application/json"

// Handler serves the current document at path: GET and HEAD only, with a
// strong ETag (If-None-Match answers 304, RFC 9110 section 13.1.2) and
// Cache-Control no-cache, so that caches revalidate and a new root is
// seen at the consumers' next refresh. Any other path is a fixed 404 that
// does not echo the request; before the first document, 503. A panic
// answers 500 and is logged with its stack.
func (b *Bundler) Handler(path string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				b.metrics.requests.WithLabelValues(outcomePanic).Inc()
				b.o.Log.Error("panic in the SPIFFE bundle endpoint", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				http.Error(w, "internal error", http.StatusInternalServerError)
			}
		}()
		b.metrics.requests.WithLabelValues(b.serve(w, r, path)).Inc()
	})
}

func (b *Bundler) serve(w http.ResponseWriter, r *http.Request, path string) string {
	if r.URL.Path != path {
		http.Error(w, "not found", http.StatusNotFound)
		return outcomeNotFound
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return outcomeMethodNotAllowed
	}
	doc := b.cur.Load()
	if doc == nil {
		http.Error(w, "the bundle is not ready", http.StatusServiceUnavailable)
		return outcomeUnavailable
	}
	h := w.Header()
	h.Set("Content-Type", ContentType)
	h.Set("ETag", doc.ETag)
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	http.ServeContent(rec, r, "", time.Time{}, bytes.NewReader(doc.JSON))
	if rec.status == http.StatusNotModified {
		return outcomeNotModified
	}
	return outcomeOK
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

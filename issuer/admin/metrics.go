package admin

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// instrument counts requests by route and status. The route is the
// pattern the server registered ("unmatched" otherwise), never the path
// the caller sent.
// listener is "socket" or "tcp".
func instrument(reg prometheus.Registerer, listener string, next http.Handler) http.Handler {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "meshca_admin_requests_total",
		Help:        "Requests on the admin endpoint, by listener (socket, tcp), registered route and HTTP status.",
		ConstLabels: prometheus.Labels{"listener": listener},
	}, []string{"route", "code"})
	if reg != nil {
		reg.MustRegister(requests)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		defer func() {
			route := r.Pattern
			if route == "" {
				route = "unmatched"
			}
			requests.WithLabelValues(route, strconv.Itoa(sw.code)).Inc()
		}()
		next.ServeHTTP(sw, r)
	})
}

type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
	// onError, when set, receives the message of an error answer (for
	// the audit line).
	onError func(msg string)
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wrote {
		s.code, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	s.wrote = true
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (Flush).
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

package admin

import (
	"bytes"
	"context"
	"net/http"
	"strconv"
)

// pathCACerts is the public cacerts route, served on the socket only.
const pathCACerts = "/v1/cacerts"

// The public files of Istio's plug-in CA folder ("Plug in CA
// Certificates", Istio docs) that the route may carry; ca-key.pem is never
// one of them.
var publicCACertsFiles = map[string]bool{
	"ca-cert.pem": true, "cert-chain.pem": true, "root-cert.pem": true, "ca-crl.pem": true,
}

// CACerts is the public part of Istio's plug-in CA files for the active
// generation, and where its private key is. The key itself never crosses
// the socket: the CLI reads the file that KeyRef names with its own
// permissions.
type CACerts struct {
	Generation uint64 `json:"generation"`
	// KeyRef locates the generation's private key as the store records it:
	// an absolute file path, or a key manager's URI (PKCS#11, KMS).
	KeyRef string `json:"keyRef"`
	// Files are ca-cert.pem, cert-chain.pem, root-cert.pem and, when asked
	// for and available, ca-crl.pem: PEM text, as the folder holds it.
	Files map[string]string `json:"files"`
}

// CACertsSource gives the public cacerts files of the active generation;
// withCRL adds the ca-crl.pem the service publishes (none when it has no
// CRL for every CA of the chain).
type CACertsSource interface {
	CACerts(ctx context.Context, withCRL bool) (CACerts, error)
}

var privateKeyPEM = []byte("PRIVATE KEY-----")

func (h *handler) caCerts(w http.ResponseWriter, r *http.Request) {
	if h.cacerts == nil {
		writeError(w, http.StatusServiceUnavailable, "this meshca serve does not serve the cacerts files")
		return
	}
	withCRL, _ := strconv.ParseBool(r.URL.Query().Get("crl"))
	c, err := h.cacerts.CACerts(r.Context(), withCRL)
	if err != nil {
		h.log.ErrorContext(r.Context(), "admin: cacerts", "err", err)
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	// The endpoint never serves a private key, whatever its source gives.
	for name, content := range c.Files {
		if !publicCACertsFiles[name] || bytes.Contains([]byte(content), privateKeyPEM) {
			h.log.ErrorContext(r.Context(), "admin: cacerts source returned a file that is not public; refused", "file", name)
			writeError(w, http.StatusInternalServerError, "internal error: refusing to serve a file that is not public")
			return
		}
	}
	writeJSON(w, http.StatusOK, c)
}

// CACerts returns the public cacerts files of the active generation and its
// key reference; withCRL asks for ca-crl.pem too.
func (c *Client) CACerts(ctx context.Context, withCRL bool) (CACerts, error) {
	var out CACerts
	p := pathCACerts
	if withCRL {
		p += "?crl=1"
	}
	err := c.do(ctx, http.MethodGet, p, nil, &out)
	return out, err
}

package bundleendpoint

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"

	"github.com/meshca/meshca/ca/smallfile"
)

// maxCertFileBytes bounds https_web's certificate and key files.
const maxCertFileBytes = 1 << 20

// FileCertificate is https_web's Web-PKI serving certificate, read from a
// PEM certificate chain and a PEM key file and read again when either
// changes (an operator or cert-manager replacing a mounted Secret): every
// Interval both files are read and compared with what is served. A change
// that does not load (a half-written pair, a key that does not match)
// keeps the served certificate and is retried at the next check.
// Handshakes only read the current certificate.
type FileCertificate struct {
	CertFile, KeyFile string
	Interval          time.Duration
	// Clock drives the checks; nil means the real clock.
	Clock clock.WithTicker
	Log   *slog.Logger

	cur     atomic.Pointer[loadedCert]
	reloads *prometheus.CounterVec
}

type loadedCert struct {
	cert *tls.Certificate
	sum  [32]byte // of the two files' contents
}

// GetCertificate implements tls.Config.GetCertificate.
func (f *FileCertificate) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := f.cur.Load(); c != nil {
		return c.cert, nil
	}
	return nil, errors.New("the bundle endpoint's certificate is not loaded")
}

// Load reads the files once; it fails if they do not hold a matching
// certificate chain and key.
func (f *FileCertificate) Load() error {
	if f.reloads == nil {
		f.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshca_bundle_endpoint_cert_reloads_total",
			Help: "Loads of the SPIFFE bundle endpoint's https_web certificate files after a change, by result.",
		}, []string{"result"})
		f.reloads.WithLabelValues("success")
		f.reloads.WithLabelValues("failure")
	}
	_, err := f.reload()
	return err
}

// Register registers meshca_bundle_endpoint_cert_reloads_total; call it after Load.
func (f *FileCertificate) Register(reg prometheus.Registerer) error {
	return reg.Register(f.reloads)
}

// reload loads the files if they changed; changed says whether they did.
func (f *FileCertificate) reload() (changed bool, err error) {
	certPEM, err := smallfile.Read(f.CertFile, maxCertFileBytes)
	if err != nil {
		return false, fmt.Errorf("bundleEndpoint.https_web.certFile: %w", err)
	}
	keyPEM, err := smallfile.Read(f.KeyFile, maxCertFileBytes)
	if err != nil {
		return false, fmt.Errorf("bundleEndpoint.https_web.keyFile: %w", err)
	}
	h := sha256.New()
	h.Write(certPEM)
	h.Write([]byte{0})
	h.Write(keyPEM)
	var sum [32]byte
	h.Sum(sum[:0])
	if cur := f.cur.Load(); cur != nil && cur.sum == sum {
		return false, nil
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// The error of X509KeyPair names what is wrong, never key bytes.
		return true, fmt.Errorf("bundleEndpoint.https_web: %s and %s: %w", f.CertFile, f.KeyFile, err)
	}
	f.cur.Store(&loadedCert{cert: &c, sum: sum})
	return true, nil
}

// Run checks the files every Interval until ctx ends.
func (f *FileCertificate) Run(ctx context.Context) {
	clk := f.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	log := f.Log
	if log == nil {
		log = slog.Default()
	}
	t := clk.NewTicker(f.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		changed, err := f.reload()
		switch {
		case err != nil:
			f.reloads.WithLabelValues("failure").Inc()
			log.Warn("reloading the bundle endpoint's certificate failed; serving the current one", "error", err)
		case changed:
			f.reloads.WithLabelValues("success").Inc()
			leaf := f.cur.Load().cert.Leaf
			log.Info("reloaded the bundle endpoint's certificate", "subject", leaf.Subject.String(), "not_after", leaf.NotAfter)
		}
	}
}

// Package podcert is meshca's PodCertificateRequest signer
// (certificates.k8s.io/v1, KEP-4317 "Pod Certificates", GA in Kubernetes
// 1.37). A kubelet creates a PodCertificateRequest for every pod that
// mounts a podCertificate projected volume naming meshca's signer; meshca
// answers with an X.509-SVID for the pod's ServiceAccount, or denies it.
//
// The identity is spiffe://<trust domain>/ns/<namespace>/sa/<ServiceAccount>
// of the request, never anything the CSR says, and only after a live read
// of the pod (its UID, ServiceAccount and node must match the request) and
// of the ServiceAccount (its UID): a stale request for a pod that is gone
// or was replaced mints no identity. The subject key comes from the
// request's stub PKCS#10 CSR, whose signature meshca verifies again (proof
// of possession). The certificate lives at least an hour and at most the
// request's maxExpirationSeconds; certificateChain, notBefore, notAfter and
// beginRefreshAt are written together with the Issued condition, as the
// API requires.
package podcert

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/meshca/meshca/ca/identity"
	"github.com/meshca/meshca/ca/profile"
	"github.com/meshca/meshca/issuer/kubesigner"
)

// Name is the controller's name (a metric label).
const Name = "podcertificate"

// Lifetime limits of a pod certificate (Kubernetes API docs,
// PodCertificateRequestSpec.maxExpirationSeconds): kube-apiserver refuses
// a certificate that lives less than an hour or longer than the request's
// maxExpirationSeconds.
const MinLifetime = time.Hour

// Options configure the signer.
type Options struct {
	// Engine signs (authority.Authority).
	Engine kubesigner.Engine
	// TrustDomain is the mesh's trust domain.
	TrustDomain string
	// SignerName is the only spec.signerName meshca acts on.
	SignerName string
	// MaxDuration caps a certificate's lifetime below the request's
	// maxExpirationSeconds; 0: no cap of its own.
	MaxDuration time.Duration
	// Profile is the certificates' profile; empty means the engine's default.
	Profile profile.Name
	// UserAnnotations are the spec.unverifiedUserAnnotations keys that
	// are accepted (and ignored); any other key denies the request.
	UserAnnotations []string
	// Workers is how many requests are signed at once (default 4).
	Workers int
	// Clock stamps the conditions (default: the real clock).
	Clock clock.PassiveClock
	Log   *slog.Logger
}

// Controller is the PodCertificateRequest signer; it implements
// kubesigner.Controller.
type Controller struct {
	o  Options
	td spiffeid.TrustDomain
}

// New checks o and returns the signer.
func New(o Options) (*Controller, error) {
	if o.Engine == nil {
		return nil, errors.New("podcert: no signing engine")
	}
	if o.SignerName == "" {
		return nil, errors.New("podcert: no signer name")
	}
	td, err := identity.TrustDomain(o.TrustDomain)
	if err != nil {
		return nil, fmt.Errorf("podcert: %w", err)
	}
	if o.MaxDuration != 0 && o.MaxDuration < MinLifetime {
		return nil, fmt.Errorf("podcert: the maximum lifetime %s is below the API's minimum of %s", o.MaxDuration, MinLifetime)
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	o.UserAnnotations = slices.Clone(o.UserAnnotations)
	return &Controller{o: o, td: td}, nil
}

// Name implements kubesigner.Controller.
func (c *Controller) Name() string { return Name }

// AddToScheme implements kubesigner.Controller.
func (c *Controller) AddToScheme(s *runtime.Scheme) error { return certificatesv1.AddToScheme(s) }

// Cache implements kubesigner.Controller: the cache holds only the
// requests for meshca's signer (kube-apiserver supports the field selector
// spec.signerName on PodCertificateRequests). Pods and ServiceAccounts are
// never cached: they are read live, one GET each per request.
func (c *Controller) Cache() map[client.Object]cache.ByObject {
	return map[client.Object]cache.ByObject{
		&certificatesv1.PodCertificateRequest{}: {Field: fields.OneTermEqualSelector("spec.signerName", c.o.SignerName)},
	}
}

// SetupWithManager implements kubesigner.Controller.
func (c *Controller) SetupWithManager(mgr ctrl.Manager, m *kubesigner.Metrics) error {
	r := &reconciler{
		o: c.o, td: c.td, m: m,
		client: mgr.GetClient(), live: mgr.GetAPIReader(),
		unwritten: kubesigner.Unwritten[issued]{MaxAge: unwrittenMaxAge, Clock: c.o.Clock},
	}
	ours := predicate.NewPredicateFuncs(func(o client.Object) bool {
		pcr, ok := o.(*certificatesv1.PodCertificateRequest)
		return ok && pcr.Spec.SignerName == c.o.SignerName
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named(Name).
		For(&certificatesv1.PodCertificateRequest{}, builder.WithPredicates(ours)).
		WithOptions(kubesigner.ControllerOptions(m, c.o.Workers)).
		Complete(r)
}

package csrsigner

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	certv1 "k8s.io/api/certificates/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	"github.com/meshca/meshca/ca/profile"
	"github.com/meshca/meshca/issuer/kubesigner"
)

// Name is the controller's name (a metric label).
const Name = "csr"

// EventSource is the reportingController of the Events it writes.
const EventSource = "meshca-csr-signer"

const (
	// workers sign in parallel, so that the engine's group commit and
	// the apiserver round trips overlap; the client's QPS/burst
	// (signers.controllers) is the real limit.
	workers = 16
)

// Options configure the signer.
type Options struct {
	// Engine signs (authority.Authority).
	Engine kubesigner.Engine
	// TrustDomain is the mesh's: the CSR's SPIFFE ID must be in it.
	TrustDomain spiffeid.TrustDomain
	// SignerNames are the spec.signerName values it acts on.
	SignerNames []string
	// AllowedRequesters are the spec.username values that may get a certificate.
	AllowedRequesters []string
	// MaxDuration caps spec.expirationSeconds (zero: the policy's maximum only).
	MaxDuration time.Duration
	// Profile of the leaves ("" for the engine's default).
	Profile profile.Name
	// Clock (default the real one).
	Clock clock.PassiveClock
	Log   *slog.Logger
}

// Signer is the CertificateSigningRequest controller.
type Signer struct {
	o         Options
	signers   map[string]bool
	requester map[string]bool

	c       client.Client
	live    client.Reader
	events  recorder.EventRecorder
	metrics *kubesigner.Metrics

	// written holds the UID of each request whose status this replica
	// wrote but whose update the cache may not have seen yet, by name, so
	// that a reconcile on a stale cached copy never signs it again.
	mu      sync.Mutex
	written map[string]types.UID
	// unwritten holds, by name, a chain signed for a request whose status
	// write failed (an API error), so that the retry writes it instead of
	// signing again: one issuance per request.
	unwritten kubesigner.Unwritten[signedChain]
}

type signedChain struct {
	uid   types.UID
	chain []byte
	notes []note // Events to write with it
}

// note is one Event: what was granted differently from what was asked.
type note struct{ reason, text string }

var _ kubesigner.Controller = (*Signer)(nil)

// New checks o and returns the signer.
func New(o Options) (*Signer, error) {
	switch {
	case o.Engine == nil:
		return nil, errors.New("csrsigner: no signing engine")
	case o.TrustDomain.IsZero():
		return nil, errors.New("csrsigner: no trust domain")
	case len(o.SignerNames) == 0:
		return nil, errors.New("csrsigner: no signer names")
	case len(o.AllowedRequesters) == 0:
		return nil, errors.New("csrsigner: no allowed requesters")
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	s := &Signer{o: o, signers: map[string]bool{}, requester: map[string]bool{}, written: map[string]types.UID{}}
	for _, n := range o.SignerNames {
		s.signers[n] = true
	}
	for _, u := range o.AllowedRequesters {
		s.requester[u] = true
	}
	return s, nil
}

// Name implements kubesigner.Controller.
func (s *Signer) Name() string { return Name }

// AddToScheme implements kubesigner.Controller.
func (s *Signer) AddToScheme(sc *runtime.Scheme) error { return certv1.AddToScheme(sc) }

// Cache implements kubesigner.Controller: with one signer name the cache
// holds only its requests (field selector spec.signerName, which the
// apiserver supports for CertificateSigningRequests); with several it
// holds every request, but keeps of another signer's only its name (see
// trim). Managed fields are never kept.
func (s *Signer) Cache() map[client.Object]cache.ByObject {
	if len(s.o.SignerNames) == 1 {
		return map[client.Object]cache.ByObject{&certv1.CertificateSigningRequest{}: {
			Field:     fields.OneTermEqualSelector("spec.signerName", s.o.SignerNames[0]),
			Transform: s.trim,
		}}
	}
	return map[client.Object]cache.ByObject{&certv1.CertificateSigningRequest{}: {Transform: s.trim}}
}

// trim drops from a cached request what meshca never reads: managed
// fields, and of another signer's request its CSR, requester, conditions
// and certificate (the predicate filters it out before any reconcile).
func (s *Signer) trim(o any) (any, error) {
	r, ok := o.(*certv1.CertificateSigningRequest)
	if !ok {
		return o, nil
	}
	r.ManagedFields = nil
	if !s.signers[r.Spec.SignerName] {
		r.Spec = certv1.CertificateSigningRequestSpec{SignerName: r.Spec.SignerName}
		r.Status = certv1.CertificateSigningRequestStatus{Certificate: []byte("-")}
		r.Annotations = nil
	}
	return r, nil
}

// SetupWithManager implements kubesigner.Controller.
func (s *Signer) SetupWithManager(mgr ctrl.Manager, m *kubesigner.Metrics) error {
	s.c, s.live, s.metrics = mgr.GetClient(), mgr.GetAPIReader(), m
	s.events = mgr.GetEventRecorder(EventSource)
	s.unwritten.Reset() // a new term: another holder may have settled them
	return ctrl.NewControllerManagedBy(mgr).
		Named(Name).
		For(&certv1.CertificateSigningRequest{}, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			r, ok := o.(*certv1.CertificateSigningRequest)
			return ok && s.signers[r.Spec.SignerName]
		}))).
		WithOptions(kubesigner.ControllerOptions(m, workers)).
		Complete(s)
}

// allowed reports whether user may get certificates.
func (s *Signer) allowed(user string) bool { return s.requester[user] }

// String names the signer for logs.
func (s *Signer) String() string {
	names := slices.Clone(s.o.SignerNames)
	slices.Sort(names)
	return fmt.Sprintf("csr signer %v", names)
}

package certmanager

import (
	"errors"
	"log/slog"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"

	"github.com/meshca/meshca/ca/identity"
	"github.com/meshca/meshca/ca/profile"
	"github.com/meshca/meshca/issuer/certmanager/api/v1alpha1"
	"github.com/meshca/meshca/issuer/kubesigner"
)

// Controller names (metric labels). The meshissuer controller counts a
// check that found the issuer Checked as outcome "checked", Pending as
// "pending" and Failed as "failed".
const (
	IssuerControllerName  = "meshissuer"
	RequestControllerName = "certificaterequest"
)

// FieldManager owns every status field meshca writes (server-side apply).
const FieldManager = "meshca"

// DefaultHealthCheckInterval is how often an issuer is re-checked.
const DefaultHealthCheckInterval = 5 * time.Minute

// pendingRecheck is how soon an issuer whose engine cannot sign is checked
// again (at most the health-check interval).
const pendingRecheck = 10 * time.Second

// Options configure both controllers.
type Options struct {
	// Engine signs (the authority); the request controller needs it.
	Engine kubesigner.Engine
	// Check tells whether the engine can sign a profile now, signing
	// nothing (EngineCheck); the issuer controller needs it.
	Check func(profile.Name) error
	// TrustDomain is the mesh's (config trustDomain).
	TrustDomain string
	// HealthCheckInterval (default 5m) is how often each issuer is re-checked.
	HealthCheckInterval time.Duration
	// Clock stamps conditions and failureTime (default the real clock).
	Clock clock.PassiveClock
	// Log (default discard).
	Log *slog.Logger
}

func (o *Options) init() {
	if o.HealthCheckInterval <= 0 {
		o.HealthCheckInterval = DefaultHealthCheckInterval
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

// addToScheme registers what both controllers read and write.
func addToScheme(s *runtime.Scheme) error {
	return errors.Join(clientgoscheme.AddToScheme(s), cmapi.AddToScheme(s), v1alpha1.AddToScheme(s))
}

// noCacheRestrictions: CertificateRequests cannot be selected by issuer
// group on the server (the CRD declares no selectable field), and the
// issuers are all meshca's.
func noCacheRestrictions() map[client.Object]cache.ByObject { return nil }

func trustDomain(name string) (spiffeid.TrustDomain, error) { return identity.TrustDomain(name) }

// workers is how many requests (and issuers) each controller reconciles at
// once; signing itself is bounded by the engine.
const workers = 4

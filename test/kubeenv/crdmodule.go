package kubeenv

// cert-manager's CRDs are installed from its Go module (defaultCRDDirs), so
// the module must stay in go.mod: importing its API types keeps it there
// (go mod tidy drops a module nothing imports), at the version whose CRDs
// and types meshca's cert-manager issuer will be built against.
import _ "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"

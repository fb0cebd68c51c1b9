package istio_test

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/rotation/intermediate"
)

// openCA opens the CA as meshca serve does: through the intermediate
// rotation manager, which mints and activates the first generation.
func openCA(ctx context.Context, cfg *config.Config, log *slog.Logger, reg prometheus.Registerer) (*authority.Runtime, error) {
	rt, _, err := intermediate.Open(ctx, cfg, nil, log, reg)
	return rt, err
}

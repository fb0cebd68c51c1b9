package tlsconfig_test

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/rotation/intermediate"
)

// openCAManager opens the CA as meshca serve does (through the
// intermediate rotation manager) and returns the manager too.
func openCAManager(ctx context.Context, cfg *config.Config, log *slog.Logger, reg prometheus.Registerer) (*authority.Runtime, *intermediate.Manager, error) {
	return intermediate.Open(ctx, cfg, nil, log, reg)
}

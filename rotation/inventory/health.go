package inventory

import "github.com/prometheus/client_golang/prometheus"

// NewStoreHealth returns meshca_store_healthy, read at scrape time from
// healthy (the store's Healthy: nil while it accepts writes). A store that
// fails closed after a commit of unknown outcome refuses every write, so
// meshca issues nothing until it is restarted.
func NewStoreHealth(healthy func() error) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "meshca_store_healthy",
		Help: "1 while the record store accepts writes; 0 once it has failed closed (restart meshca after checking the disk).",
	}, func() float64 {
		if healthy() != nil {
			return 0
		}
		return 1
	})
}

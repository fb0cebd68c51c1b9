package rotation

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	phaseDesc = prometheus.NewDesc("meshca_rotation_phase",
		"Phase of a rotating CA controller (ca is intermediate or root); 0 means no rotation in progress. Each controller documents its codes (rotation/README.md).",
		[]string{"ca"}, nil)
	lastSuccessDesc = prometheus.NewDesc("meshca_rotation_last_success_timestamp_seconds",
		"Unix time when the controller's last rotation step completed; absent until one has.",
		[]string{"ca"}, nil)
	stuckDesc = prometheus.NewDesc("meshca_rotation_stuck",
		"1 while the controller reports its rotation stuck (a step keeps failing or a phase outlasted its maximum), else 0.",
		[]string{"ca"}, nil)
	pausedDesc = prometheus.NewDesc("meshca_rotation_paused",
		"1 while an operator has paused the controller's rotation (meshca rotate pause), else 0.",
		[]string{"ca"}, nil)
)

// Collector exposes the status of the registered Reporters at scrape
// time: meshca_rotation_phase{ca} (Status.PhaseCode),
// meshca_rotation_stuck{ca} and meshca_rotation_paused{ca} (1 while
// Status.Stuck, Status.Paused, else 0) and
// meshca_rotation_last_success_timestamp_seconds{ca} (omitted while
// LastSuccess is zero). The ca label takes the Status.CA values
// (CARoot and IntermediateCA of each signer lineage), never caller input.
type Collector struct {
	mu        sync.Mutex
	reporters []Reporter
}

// Add registers more reporters.
func (c *Collector) Add(rs ...Reporter) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reporters = append(c.reporters, rs...)
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- phaseDesc
	ch <- lastSuccessDesc
	ch <- stuckDesc
	ch <- pausedDesc
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	rs := append([]Reporter(nil), c.reporters...)
	c.mu.Unlock()
	for _, r := range rs {
		s := r.RotationStatus()
		ch <- prometheus.MustNewConstMetric(phaseDesc, prometheus.GaugeValue, float64(s.PhaseCode), s.CA)
		ch <- prometheus.MustNewConstMetric(stuckDesc, prometheus.GaugeValue, boolValue(s.Stuck), s.CA)
		ch <- prometheus.MustNewConstMetric(pausedDesc, prometheus.GaugeValue, boolValue(s.Paused), s.CA)
		if !s.LastSuccess.IsZero() {
			ch <- prometheus.MustNewConstMetric(lastSuccessDesc, prometheus.GaugeValue, float64(s.LastSuccess.UnixNano())/1e9, s.CA)
		}
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// RegisterMetrics adds rs to the rotation collector of reg, registering
// it on first use, so that each rotating controller registers itself
// without knowing of the others.
func RegisterMetrics(reg prometheus.Registerer, rs ...Reporter) error {
	c := &Collector{}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return err
		}
		existing, ok := are.ExistingCollector.(*Collector)
		if !ok {
			return err
		}
		c = existing
	}
	c.Add(rs...)
	return nil
}

package vault

import (
	"context"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/util/wait"
)

// Probe checks that Vault is reachable, initialised and unsealed, and that
// meshca holds a working login (logging in again if the last attempt
// failed). For a source whose validation was deferred at start-up it
// completes the validation first. It updates the up state and returns why
// Vault is not usable.
func (s *Source) Probe(ctx context.Context) error {
	err := s.probe(ctx)
	if err != nil {
		if ctx.Err() == nil { // not a shutdown
			s.markDown(err)
		}
		return err
	}
	s.markUp()
	return nil
}

func (s *Source) probe(ctx context.Context) error {
	hctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout.Duration)
	defer cancel()
	h, err := s.api.Sys().HealthWithContext(hctx)
	if err != nil {
		return classify("health", err)
	}
	switch {
	case h.Sealed:
		return &UnavailableError{Op: "health", Sealed: true, Err: errors.New("sys/health reports sealed")}
	case !h.Initialized:
		return &UnavailableError{Op: "health", Err: errors.New("sys/health reports not initialized")}
	}
	if !s.validated.Load() {
		return s.completeValidation(ctx)
	}
	if p := s.authErr.Load(); p != nil {
		if err := s.relogin(ctx, s.tokenGen.Load()); err != nil {
			return fmt.Errorf("vault login: %w", err)
		}
	}
	return nil
}

// RunHealth probes Vault every HealthInterval while it is up, and with
// capped exponential backoff and jitter (InitialBackoff doubling up to
// MaxBackoff) while it is down, so that recovery is seen within one
// backoff period. It returns when ctx ends.
func (s *Source) RunHealth(ctx context.Context) {
	var retry wait.DelayFunc // non-nil while Vault is down
	for {
		d := s.cfg.HealthInterval.Duration
		if err := s.Probe(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			if retry == nil {
				retry = s.retryBackoff().DelayFunc()
			}
			d = retry()
		} else {
			retry = nil
		}
		if s.sleep(ctx, d) != nil {
			return
		}
	}
}

// collector computes the root-source metrics at scrape time.
type collector struct{ s *Source }

var (
	labels  = prometheus.Labels{"source": SourceName}
	upDesc  = prometheus.NewDesc("meshca_root_source_up", "Whether the root source (Vault) answered the last call or health check (1) or not (0).", nil, labels)
	lastOK  = prometheus.NewDesc("meshca_root_source_last_success_timestamp_seconds", "When a call to the root source last succeeded, in seconds since the epoch.", nil, labels)
	crlNext = prometheus.NewDesc("meshca_root_source_crl_next_update_timestamp_seconds", "The nextUpdate of the root CRL held, in seconds since the epoch.", nil, labels)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- upDesc
	ch <- lastOK
	ch <- crlNext
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	up := 0.0
	if c.s.Up() {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, up)
	if t := c.s.LastSuccess(); !t.IsZero() {
		ch <- prometheus.MustNewConstMetric(lastOK, prometheus.GaugeValue, float64(t.UnixNano())/1e9)
	}
	if crl := c.s.CurrentCRL(); crl != nil && !crl.NextUpdate.IsZero() {
		ch <- prometheus.MustNewConstMetric(crlNext, prometheus.GaugeValue, float64(crl.NextUpdate.Unix()))
	}
}

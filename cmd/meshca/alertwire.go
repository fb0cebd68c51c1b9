package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/rotation/alert"
	"github.com/meshca/meshca/trustbundle/publish"
)

// alerts is serve's alerting engine, when alerts.* configures a sink.
type alerts struct {
	engine *alert.Engine
}

// startAlerts builds the sinks of cfg.Alerts and starts the engine on
// states (the store). Without a sink the engine still runs: the rules'
// alerts are kept in the store, so that meshca status shows what fires
// and a sink configured later starts from the same state; nothing is
// delivered. The engine's delivery runs until ctx ends, through single
// when given (serve: only on the holder of the singleton jobs' Lease).
func startAlerts(ctx context.Context, cfg *config.Config, states store.AlertStates, log *slog.Logger, reg prometheus.Registerer, single ...*singletons) (*alerts, error) {
	ac := cfg.Alerts
	var sinks []alert.Sink
	if f := ac.Slack.WebhookURLFile; f != "" {
		s, err := alert.NewSlack(f, nil)
		if err != nil {
			return nil, fmt.Errorf("alerts.slack.webhookURLFile: %w; write the incoming webhook's URL into that file (mount the Secret that holds it)", err)
		}
		sinks = append(sinks, s)
	}
	if f := ac.Webhook.URLFile; f != "" {
		s, err := alert.NewWebhook(f, nil)
		if err != nil {
			return nil, fmt.Errorf("alerts.webhook.urlFile: %w; write the receiver's URL into that file (mount the Secret that holds it)", err)
		}
		sinks = append(sinks, s)
	}
	e, err := alert.New(ctx, alert.Options{
		States: states, Sinks: sinks, RepeatInterval: ac.RepeatInterval.Duration, Log: log, Registerer: reg,
	})
	if err != nil {
		return nil, err
	}
	deliver := func(ctx context.Context) {
		if err := e.Run(ctx); err != nil {
			log.Error("alerting engine stopped", "error", err)
		}
	}
	if len(single) > 0 && single[0] != nil {
		single[0].Go("alerts", deliver)
	} else {
		go deliver(ctx)
	}
	names := make([]string, len(sinks))
	for i, s := range sinks {
		names[i] = s.Name()
	}
	if len(names) == 0 {
		log.Info("alerting engine started without a sink: alerts are kept in the store and shown by meshca status; set alerts.slack.webhookURLFile or alerts.webhook.urlFile to deliver them")
	} else {
		log.Info("alerting engine started", "sinks", names, "repeat_interval", ac.RepeatInterval.Duration)
	}
	return &alerts{engine: e}, nil
}

// publishOptions makes the trust publisher raise its problems as alerts.
func (a *alerts) publishOptions() []publish.Option {
	if a == nil {
		return nil
	}
	return []publish.Option{publish.WithAlerts(a.engine)}
}

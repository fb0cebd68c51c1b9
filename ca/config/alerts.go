package config

import (
	"strings"
	"time"
)

// Alert defaults.
const (
	// DefaultAlertRepeatInterval is how often a firing alert is sent again
	// (Alertmanager's default repeat_interval).
	DefaultAlertRepeatInterval = 4 * time.Hour
	MinAlertRepeatInterval     = time.Minute
)

// AlertsConfig configures where meshca's alerts are sent. Each webhook URL
// is a credential: it is read from a file (a mounted Secret), never written
// in this configuration.
type AlertsConfig struct {
	Slack   SlackAlertsConfig   `json:"slack,omitzero"`
	Webhook WebhookAlertsConfig `json:"webhook,omitzero"`
	// RepeatInterval is how often a firing alert is sent again; default 4h.
	RepeatInterval Duration `json:"repeatInterval,omitzero"`
	// Rules configures the alert rules' thresholds.
	Rules AlertRulesConfig `json:"rules,omitzero"`
}

// SlackAlertsConfig is a Slack incoming webhook.
type SlackAlertsConfig struct {
	// WebhookURLFile holds the incoming webhook's URL.
	WebhookURLFile string `json:"webhookURLFile,omitempty"`
}

// WebhookAlertsConfig is a receiver of Alertmanager's webhook JSON.
type WebhookAlertsConfig struct {
	// URLFile holds the receiver's URL.
	URLFile string `json:"urlFile,omitempty"`
}

// Enabled reports whether any alert sink is configured.
func (a AlertsConfig) Enabled() bool { return a.Slack.WebhookURLFile != "" || a.Webhook.URLFile != "" }

// Init fills the defaults.
func (a *AlertsConfig) Init() {
	if a.RepeatInterval.Duration == 0 {
		a.RepeatInterval.Duration = DefaultAlertRepeatInterval
	}
	a.Rules.init()
}

func (a AlertsConfig) validate(add func(string, string, ...any)) {
	a.Rules.validate(add)
	if a.RepeatInterval.Duration < MinAlertRepeatInterval {
		add("alerts.repeatInterval", "%s is too short; use at least %s (default %s): a firing alert is sent again at this interval",
			a.RepeatInterval.Duration, MinAlertRepeatInterval, DefaultAlertRepeatInterval)
	}
	for _, f := range []struct{ key, file string }{
		{"alerts.slack.webhookURLFile", a.Slack.WebhookURLFile},
		{"alerts.webhook.urlFile", a.Webhook.URLFile},
	} {
		if key := f.key; strings.Contains(f.file, "://") {
			// The value is not repeated: it is a credential.
			add(key, "is a URL; put the URL in a file (a mounted Secret) and give the file's path here: the URL is a credential and must not be in the configuration")
		}
	}
}

package alert

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"time"

	"k8s.io/utils/clock"
)

// NewWebhook returns a sink that posts Alertmanager's webhook JSON
// (version 4, one alert per message) to the URL in urlFile, so that
// anything that receives Alertmanager notifications receives meshca's. Any
// 2xx answer is a success.
func NewWebhook(urlFile string, clk clock.PassiveClock) (Sink, error) {
	if clk == nil {
		clk = clock.RealClock{}
	}
	s, err := newHTTPSink("webhook", "alert webhook", urlFile, clk)
	if err != nil {
		return nil, err
	}
	s.body = func(n Notification) ([]byte, error) { return json.Marshal(alertmanagerMessage(n)) }
	s.ok = func(int, []byte) bool { return true }
	return s, nil
}

// The payload of Alertmanager's webhook_config
// (https://prometheus.io/docs/alerting/latest/configuration/#webhook_config).
type amPayload struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   int               `json:"truncatedAlerts"`
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []amAlert         `json:"alerts"`
}

type amAlert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

func alertmanagerMessage(n Notification) amPayload {
	s := n.State
	labels := map[string]string{"alertname": s.Rule, "object": s.Object, "severity": s.Severity, "source": "meshca"}
	annotations := map[string]string{"summary": s.Summary}
	if s.Action != "" {
		annotations["action"] = s.Action
	}
	if !s.Expires.IsZero() {
		annotations["expires"] = stamp(s.Expires)
	}
	status := "firing"
	var ends time.Time // Alertmanager sends the zero time for a firing alert
	if n.Kind == KindResolved {
		status, ends = "resolved", s.EndsAt.UTC()
	}
	return amPayload{
		Version:           "4",
		GroupKey:          fmt.Sprintf("{}:{alertname=%q, object=%q}", s.Rule, s.Object),
		Status:            status,
		Receiver:          "meshca",
		GroupLabels:       map[string]string{"alertname": s.Rule, "object": s.Object},
		CommonLabels:      labels,
		CommonAnnotations: annotations,
		Alerts: []amAlert{{
			Status: status, Labels: labels, Annotations: annotations,
			StartsAt: s.StartsAt.UTC(), EndsAt: ends, Fingerprint: fingerprint(labels),
		}},
	}
}

// fingerprint is a 64-bit FNV-1a hash of the sorted labels, in hex.
func fingerprint(labels map[string]string) string {
	h := fnv.New64a()
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		h.Write([]byte(k))
		h.Write([]byte{0xff})
		h.Write([]byte(labels[k]))
		h.Write([]byte{0xff})
	}
	return fmt.Sprintf("%016x", h.Sum64())
}

package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/store/boltstore"
	"github.com/meshca/meshca/rotation/alert"
)

// Without a sink the engine runs all the same and keeps what fires in the
// store (meshca status lists it); nothing is delivered.
func TestStartAlerts_WithoutASinkKeepsStateForStatus(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Defaults(dir)
	st, err := boltstore.Open(filepath.Join(dir, "alerts.db"))
	require.NoError(t, err)
	defer st.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := startAlerts(ctx, cfg, st, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	require.NoError(t, err)
	require.NotNil(t, a)
	require.Len(t, a.publishOptions(), 1)
	require.NoError(t, a.engine.Raise(ctx, alert.Alert{Rule: "CRLStale", Object: "gen-1", Severity: alert.Critical, Summary: "stale"}))
	states, err := st.ListAlertStates(ctx)
	require.NoError(t, err)
	require.Len(t, states, 1)
	require.Equal(t, "CRLStale", states[0].Rule)
}

// alerts.slack.webhookURLFile starts an engine on the store that posts to
// the URL in the file.
func TestStartAlerts_SlackFromConfig(t *testing.T) {
	got := make(chan map[string]any, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		b, _ := io.ReadAll(r.Body)
		require.NoError(t, json.Unmarshal(b, &body))
		got <- body
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	urlFile := filepath.Join(dir, "slack-url")
	require.NoError(t, os.WriteFile(urlFile, []byte(srv.URL+"/services/T/B/x\n"), 0o600))
	cfg := config.Defaults(dir)
	cfg.Alerts.Slack.WebhookURLFile = urlFile
	require.NoError(t, cfg.Validate())
	st, err := boltstore.Open(cfg.Store.Path)
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	reg := prometheus.NewRegistry()

	a, err := startAlerts(ctx, cfg, st, slog.New(slog.DiscardHandler), reg)
	require.NoError(t, err)
	require.Len(t, a.publishOptions(), 1)
	require.NoError(t, a.engine.Raise(ctx, alert.Alert{Rule: "CRLTooLarge", Object: "ConfigMap */istio-ca-crl", Severity: alert.Critical, Summary: "too large"}))
	select {
	case body := <-got:
		require.Equal(t, "[FIRING:critical] ConfigMap */istio-ca-crl: too large", body["text"])
	case <-time.After(10 * time.Second):
		t.Fatal("no Slack message")
	}
	saved, err := st.ListAlertStates(ctx)
	require.NoError(t, err)
	require.Len(t, saved, 1, "the state is in the store")
	n, err := testutil.GatherAndCount(reg, "meshca_alerts_firing")
	require.NoError(t, err)
	require.Equal(t, 1, n)
}

func TestStartAlerts_BadURLFileIsActionable(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Defaults(dir)
	cfg.Alerts.Slack.WebhookURLFile = filepath.Join(dir, "missing")
	_, err := startAlerts(context.Background(), cfg, nil, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	require.ErrorContains(t, err, "alerts.slack.webhookURLFile: Slack webhook: reading the URL file")
	require.ErrorContains(t, err, "mount the Secret that holds it")

	bad := filepath.Join(dir, "bad")
	require.NoError(t, os.WriteFile(bad, []byte("not-a-url/T/B/s3cr3t"), 0o600))
	cfg.Alerts.Slack.WebhookURLFile = ""
	cfg.Alerts.Webhook.URLFile = bad
	_, err = startAlerts(context.Background(), cfg, nil, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	require.ErrorContains(t, err, "alerts.webhook.urlFile: alert webhook: "+bad+" does not hold an http(s) URL")
	require.NotContains(t, err.Error(), "s3cr3t")
}

package rules

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	testclock "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/ca/store/boltstore"
	"github.com/meshca/meshca/rotation/alert"
	"github.com/meshca/meshca/rotation/inventory"
)

// slackServer stands in for a Slack incoming webhook: it answers 200 "ok"
// and hands over each body.
func slackServer(t *testing.T) (urlFile string, got chan string) {
	got = make(chan string, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- string(b)
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	urlFile = filepath.Join(t.TempDir(), "url")
	require.NoError(t, os.WriteFile(urlFile, []byte(srv.URL+"/services/T0/B0/x\n"), 0o600))
	return urlFile, got
}

func nextBody(t *testing.T, got chan string) string {
	t.Helper()
	select {
	case b := <-got:
		return b
	case <-time.After(10 * time.Second):
		t.Fatal("no message reached Slack")
		return ""
	}
}

func noBody(t *testing.T, got chan string) {
	t.Helper()
	select {
	case b := <-got:
		t.Fatalf("unexpected message: %s", b)
	case <-time.After(50 * time.Millisecond):
	}
}

// runEngine starts an engine on the bolt store at path with a Slack sink.
func runEngine(t *testing.T, clk *testclock.FakeClock, path, urlFile string) (*alert.Engine, *boltstore.Store, func()) {
	t.Helper()
	st, err := boltstore.Open(path)
	require.NoError(t, err)
	sink, err := alert.NewSlack(urlFile, nil)
	require.NoError(t, err)
	e, err := alert.New(context.Background(), alert.Options{States: st, Sinks: []alert.Sink{sink}, Clock: clk, Log: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(ctx) }()
	return e, st, func() { cancel(); <-done; require.NoError(t, st.Close()) }
}

// delivered waits until the store holds no undelivered notification for key.
func delivered(t *testing.T, st *boltstore.Store, key string) {
	t.Helper()
	require.Eventually(t, func() bool {
		s, err := st.GetAlertState(context.Background(), key)
		return err != nil || s.Pending == ""
	}, 10*time.Second, time.Millisecond)
}

const slackExpiryFire = `{
  "text": "[FIRING:warning] intermediate gen-3: meshca's intermediate \"meshca intermediate\" (serial 33) expires at 2026-08-09T12:00:00Z: 30d 0h left, 30% of its lifetime.",
  "blocks": [
    {"type": "header", "text": {"type": "plain_text", "text": "Firing (warning): CACertificateExpiring"}},
    {"type": "section", "text": {"type": "mrkdwn", "text": "*What*\nmeshca's intermediate \"meshca intermediate\" (serial 33) expires at 2026-08-09T12:00:00Z: 30d 0h left, 30% of its lifetime."}},
    {"type": "section", "fields": [
      {"type": "mrkdwn", "text": "*Where*\nintermediate gen-3"},
      {"type": "mrkdwn", "text": "*Severity*\nwarning"},
      {"type": "mrkdwn", "text": "*Expires*\n2026-08-09T12:00:00Z (in 30d 0h)"},
      {"type": "mrkdwn", "text": "*Firing since*\n2026-07-10T12:00:00Z"}
    ]},
    {"type": "section", "text": {"type": "mrkdwn", "text": "*What meshca is doing*\nmeshca's rotation of the intermediate failed: it retries; see meshca status."}},
    {"type": "context", "elements": [{"type": "mrkdwn", "text": "meshca alert ` + "`CACertificateExpiring/intermediate gen-3`" + `"}]}
  ]
}`

const slackExpiryResolved = `{
  "text": "[RESOLVED] intermediate gen-3: meshca's intermediate \"meshca intermediate\" (serial 33) expires at 2026-08-09T12:00:00Z: 29d 23h left, 29% of its lifetime.",
  "blocks": [
    {"type": "header", "text": {"type": "plain_text", "text": "Resolved: CACertificateExpiring"}},
    {"type": "section", "text": {"type": "mrkdwn", "text": "*What*\nmeshca's intermediate \"meshca intermediate\" (serial 33) expires at 2026-08-09T12:00:00Z: 29d 23h left, 29% of its lifetime."}},
    {"type": "section", "fields": [
      {"type": "mrkdwn", "text": "*Where*\nintermediate gen-3"},
      {"type": "mrkdwn", "text": "*Severity*\nwarning"},
      {"type": "mrkdwn", "text": "*Expires*\n2026-08-09T12:00:00Z (in 29d 22h)"},
      {"type": "mrkdwn", "text": "*Firing since*\n2026-07-10T12:00:00Z"},
      {"type": "mrkdwn", "text": "*Resolved at*\n2026-07-10T14:00:00Z"}
    ]},
    {"type": "section", "text": {"type": "mrkdwn", "text": "*What meshca is doing*\nNothing more: the problem is gone."}},
    {"type": "context", "elements": [{"type": "mrkdwn", "text": "meshca alert ` + "`CACertificateExpiring/intermediate gen-3`" + `"}]}
  ]
}`

// The expiry rule's alert reaches Slack once when it fires; after a
// restart (bbolt closed and reopened) the rule raises it again and Slack
// hears nothing (the raise only updates the text, now 29d 23h left); once
// the intermediate is gone the resolved message goes.
func TestSlack_ExpiryFireRestartResolved(t *testing.T) {
	at := T0.Add(70 * day)
	clk := testclock.NewFakeClock(at)
	urlFile, got := slackServer(t)
	path := filepath.Join(t.TempDir(), "meshca.db")
	inter := inventory.Certificate{Kind: inventory.KindIntermediate, Name: "gen-3",
		Cert: newCert(t, "meshca intermediate", 0x33, T0, T0.Add(100*day))}
	src := &listSource{}
	src.set(nil, inter)
	rule := func() Rule {
		return &CAExpiry{Sources: []inventory.Source{src}, Thresholds: DefaultThresholds(),
			Action: func(inventory.Certificate, time.Time) string {
				return "meshca's rotation of the intermediate failed: it retries; see meshca status."
			}}
	}
	const key = "CACertificateExpiring/intermediate gen-3"

	e, st, stop := runEngine(t, clk, path, urlFile)
	sw := startSweeper(t, clk, e, rule())
	require.JSONEq(t, slackExpiryFire, nextBody(t, got))
	delivered(t, st, key)
	sw.stop()
	stop()

	clk.Step(time.Hour)
	e, st, stop = runEngine(t, clk, path, urlFile)
	defer stop()
	sw = startSweeper(t, clk, e, rule())
	require.Equal(t, map[string]string{key: "warning"}, sw.firing())
	noBody(t, got)

	src.set(nil) // rotated away
	sw.to(t, at.Add(2*time.Hour))
	require.JSONEq(t, slackExpiryResolved, nextBody(t, got))
	delivered(t, st, key)
	require.Empty(t, sw.firing())
	noBody(t, got)
}
